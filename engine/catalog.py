"""The playbooks in force, file by file, and how a reload changes them.

A reload re-reads the folder, re-parses only files whose bytes changed, and
builds the next set beside the one in force:

- a file whose new version fails validation keeps its previous version in
  force (its problems are reported), so one bad save never stops the others;
- a file whose new version clashes with the set (an id used by another file,
  an unknown source, a refused path) is treated the same way;
- a deleted file takes its playbook away;
- a file that still fails, unchanged, is not re-parsed and is not a change.

Reading only; the sidecar swaps the returned set in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .errors import DocumentError, Problem
from .loader import PlaybookSet, build_playbook, check_set, display_name, playbook_files
from .playbook import Playbook
from .yaml_document import Document, read_document


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str
    playbook: Playbook
    doc: Document


@dataclass(frozen=True, slots=True, kw_only=True)
class Reload:
    """What a reload did, by playbook id and file."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()  # files whose previous version stays in force because the new one failed
    failed: tuple[str, ...] = ()  # files with problems and no version in force

    def describe(self) -> str:
        parts = [f"{label} {', '.join(ids)}" for label, ids in
                 (("added", self.added), ("updated", self.updated), ("removed", self.removed),
                  ("kept previous version of", self.kept), ("rejected", self.failed)) if ids]
        return "; ".join(parts) or "no change"


@dataclass(slots=True)
class Catalog:
    folder: Path
    config: Config | None = None
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _failed: dict[str, tuple[str, tuple[Problem, ...]]] = field(default_factory=dict)
    _current: PlaybookSet | None = None

    @property
    def current(self) -> PlaybookSet:
        return self._current or PlaybookSet(playbooks=(), problems=())

    def refresh(self) -> tuple[PlaybookSet, Reload | None]:
        """Re-read the folder; return the set in force and what changed (None: nothing did)."""
        candidates: dict[str, _Entry] = {}
        failed: dict[str, tuple[str, tuple[Problem, ...]]] = {}
        changed = self._current is None
        for path in playbook_files([self.folder]):
            name = display_name(path)
            old = self._entries.get(name)
            try:
                raw = path.read_bytes()
            except OSError as exc:  # e.g. a ConfigMap mid-swap: keep what we have
                if old is not None:
                    candidates[name] = old
                failed[name] = ("", (Problem(file=name, line=0, column=0, path="", message=f"cannot read: {exc.strerror}"),))
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if old is not None and old.digest == digest:
                candidates[name] = old
                continue
            if name in self._failed and self._failed[name][0] == digest:
                failed[name] = self._failed[name]
                if old is not None:
                    candidates[name] = old
                continue
            changed = True
            try:
                doc = read_document(raw, name)
                candidates[name] = _Entry(digest, build_playbook(doc, digest), doc)
            except DocumentError as exc:
                failed[name] = (digest, exc.problems)
                if old is not None:
                    candidates[name] = old
        if set(self._entries) - set(candidates) - set(failed):
            changed = True
        if not changed and self._current is not None and set(failed) == set(self._failed):
            return self._current, None
        final, set_problems = self._settle(candidates)
        problems = [p for _, probs in failed.values() for p in probs] + set_problems
        before = {e.playbook.id: e.digest for e in self._entries.values()}
        after = {e.playbook.id: e.digest for e in final.values()}
        problem_files = set(failed) | {p.file for p in set_problems}
        change = Reload(
            added=tuple(sorted(set(after) - set(before))),
            updated=tuple(sorted(i for i in set(after) & set(before) if after[i] != before[i])),
            removed=tuple(sorted(set(before) - set(after))),
            kept=tuple(sorted(n for n in problem_files if n in final and final[n] is self._entries.get(n))),
            failed=tuple(sorted(n for n in problem_files if n not in final)),
        )
        self._entries = final
        self._failed = failed
        self._current = PlaybookSet(
            playbooks=tuple(e.playbook for _, e in sorted(final.items())),
            problems=tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column))),
        )
        return self._current, change

    def _settle(self, candidates: dict[str, _Entry]) -> tuple[dict[str, _Entry], list[Problem]]:
        """Resolve set-level problems: a clashing new version falls back to its previous one, else out."""
        entries = dict(candidates)
        reported: list[Problem] = []
        for _ in range(len(entries) + 1):
            problems = check_set([(e.playbook, e.doc) for _, e in sorted(entries.items())], self.config)
            if not problems:
                break
            reported.extend(p for p in problems if p not in reported)
            for name in {p.file for p in problems}:
                old = self._entries.get(name)
                if old is not None and entries.get(name) is not old:
                    entries[name] = old
                else:
                    entries.pop(name, None)
        return entries, reported
