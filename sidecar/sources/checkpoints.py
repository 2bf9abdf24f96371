"""Where each followed file resumes: one JSON file of checkpoints, shared by all file sources.

One JSON file keyed by source name and "dev:ino", holding the fingerprint, the
offset just after the last committed line, ``cont`` (the line at the offset
continues a flushed partial line), ``skip`` (the lines at the offset continue a
traceback cut at its cap) and the path. A checkpoint is used only if the file's
fingerprint still matches (see ``sidecar.sources.files``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from suture.engine.backup import atomic_write

log = logging.getLogger(__name__)

FP_BYTES = 256  # a file's fingerprint: the sha256 of (up to) its first bytes
SKIP_STATES = ("", "tb", "tb!", "eg", "eg!")  # Resume.skip: inside a cut traceback ("!": it may be complete)


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Resume:
    """One checkpoint: where to resume a file, and how to recognise it."""

    fp: str  # sha256 hex of the first fp_len bytes
    fp_len: int
    offset: int  # just after the last committed line
    cont: bool  # the line at offset continues a flushed partial line
    path: str  # where the file was last seen
    skip: str = ""  # the lines at offset continue a traceback cut at its cap (one of SKIP_STATES)

    def matches(self, head: bytes) -> bool:
        return len(head) >= self.fp_len and fingerprint(head[: self.fp_len]) == self.fp

    @classmethod
    def parse(cls, doc: Any) -> Resume:
        ok = (isinstance(doc, dict) and isinstance(doc.get("fp"), str) and type(doc.get("fp_len")) is int
              and type(doc.get("offset")) is int and isinstance(doc.get("cont"), bool)
              and isinstance(doc.get("path"), str))
        skip = doc.get("skip", "") if isinstance(doc, dict) else ""
        if not ok or not 0 <= doc["fp_len"] <= FP_BYTES or doc["offset"] < 0 or skip not in SKIP_STATES:
            raise ValueError(f"bad checkpoint entry {doc!r:.200}")
        return cls(doc["fp"], doc["fp_len"], doc["offset"], doc["cont"], doc["path"], skip)


class Checkpoints:
    """Persisted read positions, one JSON file (e.g. state_dir/checkpoints.json), written atomically.

    Shared by every FileSource (entries are namespaced by source name); safe to use
    from several threads. A corrupt file is renamed to ``<name>.corrupt``, counted in
    ``corrupt`` and logged, and the store counts as fresh: files start at their end
    rather than replaying their whole history as if it were happening now.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.corrupt = 0
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._marks: dict[str, dict[str, Resume]] = {}
        self._saved = 0
        self._fresh = not self.path.exists()
        if not self._fresh:
            self._load()
        # A fresh store is written at its first save even when empty: a restart must not take
        # files that appeared in between for history and start them at their end.
        self._changes = int(self._fresh)

    @property
    def fresh(self) -> bool:
        """True when no (usable) checkpoint file existed at start."""
        return self._fresh

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_bytes())
            if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("sources"), dict):
                raise ValueError("not a version 1 checkpoint file")
            self._marks = {str(src): {str(k): Resume.parse(v) for k, v in marks.items()}
                           for src, marks in doc["sources"].items()}
        except (ValueError, AttributeError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            self.corrupt += 1
            self._marks, self._fresh = {}, True
            log.error("checkpoint file %s is corrupt (%s); moved to %s, starting fresh", self.path, exc, aside)

    def get(self, source: str, key: str) -> Resume | None:
        with self._lock:
            return self._marks.get(source, {}).get(key)

    def entries(self, source: str) -> dict[str, Resume]:
        with self._lock:
            return dict(self._marks.get(source, {}))

    def put(self, source: str, key: str, mark: Resume) -> None:
        with self._lock:
            marks = self._marks.setdefault(source, {})
            if marks.get(key) != mark:
                marks[key] = mark
                self._changes += 1

    def drop(self, source: str, key: str) -> None:
        with self._lock:
            if self._marks.get(source, {}).pop(key, None) is not None:
                self._changes += 1

    def save(self, *, durable: bool = True) -> None:
        """Write the file atomically (mode 0600) if anything changed or it was never written; on OSError the
        next save retries. ``durable=False`` skips the fsyncs: the rename still survives the process being
        killed (the guarantee a restart needs), only not a power cut; the runtime saves durably now and then."""
        with self._save_lock:
            with self._lock:
                if self._changes == self._saved:
                    return
                changes = self._changes
                doc = {"version": 1, "sources": {src: {k: asdict(m) for k, m in marks.items()}
                                                 for src, marks in self._marks.items() if marks}}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode(), mode=0o600,
                         durable=durable, trusted_folder=True)
            with self._lock:
                self._saved = changes

