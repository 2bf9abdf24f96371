"""What every builder of the playbook model shares: a document, its problems said where, and checked parts.

A :class:`Builder` wraps one schema-checked :class:`~.documents.Document`. The condition
builders (``engine.build_conditions``), the action builders (``engine.build_actions``) and
the playbook builder (``engine.loader``) record each semantic problem through it, with the
file, line, column and YAML path of the part at fault, and go on: one load reports every
problem of a file.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import Problem
from .playbook import Where, parse_duration
from .yaml_document import Document, PathKey, render_path


class Builder:
    """One document being built: where its parts were written, and every problem found so far."""

    def __init__(self, doc: Document, digest: str = "") -> None:
        self.doc = doc
        self.digest = digest
        self.problems: list[Problem] = []

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> None:
        """Record a problem at ``path`` (``key``: at the mapping key rather than its value)."""
        self.problems.append(self.doc.problem(path, message, key=key))

    def where(self, path: PathKey) -> Where:
        return Where(file=self.doc.file, line=self.doc.anchor(path).line, path=render_path(path))

    def duration(self, path: PathKey, text: str | None, default: float) -> float:
        """Seconds of a duration such as ``30s``; ``default`` when absent, or (with a problem) when wrong."""
        if text is None:
            return default
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problem(path, str(exc))
            return default

    def regex(self, path: PathKey, pattern: str) -> re.Pattern[str] | None:
        """The compiled pattern, or None (with a problem saying what and at which position) when invalid."""
        try:
            return re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            msg = getattr(exc, "msg", str(exc))
            pos = getattr(exc, "pos", None)
            at = f" at position {pos}" if pos is not None else ""
            self.problem(path, f"invalid regex: {msg}{at}")
            return None


def as_int(value: Any) -> int | None:
    """The schema's integers may be written 5.0; the model holds ints."""
    return None if value is None else int(value)


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(text: str) -> PathKey:
    """Back from ``when.all[0].log`` to ``("when", "all", 0, "log")``."""
    return tuple(int(i) if i else name for name, i in _PART.findall(text))


def path_of(where: Where) -> PathKey:
    """The path of a model element's :class:`Where`, to report a later problem at it."""
    return parse_path(where.path)
