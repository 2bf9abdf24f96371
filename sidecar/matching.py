"""Matching log lines against every pattern of a source in one pass.

A :class:`PatternSet` holds every log pattern of one source. Hyperscan scans a
whole block of lines for all of them at once, in C; Python runs only for the
lines it reports. Hyperscan only *prunes*: every candidate line is confirmed
by the pattern's real regex on that one line, which also extracts the
``group_by`` labels. So the answer is exactly Python's, and a line that
matches nothing costs no Python work at all.

Both expressions are generated from Python's own parse of the pattern
(``re._parser``, see ``sidecar.pattern_tree``), never handed over as written,
because the three engines read the same text differently: the *prefilter*
given to hyperscan is a guaranteed superset on one line
(``sidecar.pattern_prefilter``), the *confirming* expression runs on the
``regex`` module, for its timeout, with Python ``re`` semantics spelled out
(``sidecar.pattern_exact``). :func:`translate` gives both.

A pattern whose prefilter hyperscan refuses (typically one that matches the
empty string) is searched on every line instead, and ``engines()`` says so.
A confirmation that exceeds its timeout counts as no match and is counted.
Remaining difference: characters assigned after Python's Unicode version may
classify differently under ``regex``.

Not thread-safe: a PatternSet belongs to the thread that feeds it lines.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import hyperscan
import regex
from suture.engine.playbook import LogCondition

from .pattern_exact import Exact
from .pattern_prefilter import Prefilter, nullable, trim_tail
from .pattern_tree import Untranslatable, parser

DEFAULT_TIMEOUT = 0.05  # seconds one confirmation may take before it counts as no match
HS_FLAGS = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP | hyperscan.HS_FLAG_MULTILINE

Hit = tuple[str, dict[str, str]]
LineHits = tuple[int, int, list[Hit]]


def translate(pattern: str) -> tuple[str | None, str]:
    """``(prefilter for hyperscan, exact regex for the regex module)`` of a Python pattern.

    The prefilter is None when the pattern can match an empty string: such a
    pattern cannot be prefiltered by what it consumes.
    """
    try:
        tree = parser.parse(pattern)
    except re.error as exc:
        raise Untranslatable(f"invalid pattern: {exc}") from exc
    flags = tree.state.flags
    names = {gid: name for name, gid in tree.state.groupdict.items()}
    items = list(tree)
    exact = Exact(names).seq(items, flags)
    if nullable(items):
        return None, exact
    return Prefilter().seq(trim_tail(items), flags), exact


# --- the pattern set -------------------------------------------------------------------


@dataclass(slots=True)
class _Pattern:
    signal: str
    pattern: str
    group_by: tuple[str, ...]
    search: Callable[[str], Any]  # may raise TimeoutError
    engine: str = "hyperscan"


def _collect(pid: int, _start: int, _end: int, _flags: int, found: set[int]) -> None:
    found.add(pid)


class PatternSet:
    """Every pattern of one source; ``match`` a line, or ``scan`` a block of lines.

    ``stats``: lines_scanned, hits_confirmed (line/pattern pairs), prefilter_rejects
    (hyperscan candidates the real regex turned down), timeouts (confirmations cut off).
    """

    def __init__(self, conditions: Iterable[LogCondition], *, timeout: float = DEFAULT_TIMEOUT) -> None:
        seen: dict[str, LogCondition] = {}
        for c in conditions:
            seen.setdefault(c.signal, c)
        self.timeout = timeout
        self.stats = {"lines_scanned": 0, "hits_confirmed": 0, "prefilter_rejects": 0, "timeouts": 0}
        self._patterns: list[_Pattern] = []
        expressions: list[bytes] = []
        ids: list[int] = []
        self._always: set[int] = set()  # searched on every line: hyperscan refused their prefilter
        for i, c in enumerate(seen.values()):
            pattern, prefilter = self._build(c)
            self._patterns.append(pattern)
            if prefilter is None:
                self._always.add(i)
            else:
                expressions.append(prefilter)
                ids.append(i)
        self._db: Any = None
        if expressions:
            db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            try:
                db.compile(expressions=expressions, ids=ids, elements=len(ids), flags=[HS_FLAGS] * len(ids))
                self._db = db
            except hyperscan.error as exc:  # each compiled alone; together they exceed a limit
                for i in ids:
                    self._patterns[i].engine = f"re: hyperscan could not compile the set together ({exc}); checked on every line"
                    self._always.add(i)

    def _build(self, c: LogCondition) -> tuple[_Pattern, bytes | None]:
        """The pattern's confirming search, and its prefilter (None: search every line)."""
        try:
            prefilter, exact = translate(c.pattern)
        except Untranslatable as exc:  # a parse tree this module does not know: plain re, exact but untimed
            engine = f"re: cannot translate it ({exc}); checked on every line without a timeout"
            return _Pattern(c.signal, c.pattern, c.group_by, re.compile(c.pattern).search, engine), None
        try:
            pattern = _Pattern(c.signal, c.pattern, c.group_by, self._timed(exact))
        except regex.error as exc:  # not expected: the translation is plain regex syntax
            pattern = _Pattern(c.signal, c.pattern, c.group_by, re.compile(c.pattern).search,
                               f"hyperscan (confirmed by re without a timeout: regex refused it: {exc})")
        if prefilter is None:
            pattern.engine = "re: it can match an empty string, so hyperscan cannot prefilter it; checked on every line"
            return pattern, None
        reason = self._hyperscan_refuses(prefilter, c.pattern)
        if reason is not None:
            pattern.engine = f"re: {reason}; checked on every line"
            return pattern, None
        return pattern, prefilter.encode()

    def _timed(self, exact: str) -> Callable[[str], Any]:
        compiled = regex.compile(exact)
        timeout = self.timeout

        def search(text: str) -> Any:
            return compiled.search(text, timeout=timeout)

        return search

    @staticmethod
    def _hyperscan_refuses(prefilter: str, pattern: str) -> str | None:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            db.compile(expressions=[prefilter.encode()], ids=[0], elements=1, flags=[HS_FLAGS])
            return None
        except hyperscan.error as exc:
            message = str(exc)
        return f"hyperscan refused /{pattern}/: {message}"

    def __len__(self) -> int:
        return len(self._patterns)

    def engines(self) -> dict[str, str]:
        """For each signal: ``"hyperscan"``, or ``"re: <why hyperscan cannot prefilter it>"``."""
        return {p.signal: p.engine for p in self._patterns}

    # -- one line --

    def match(self, text: str) -> list[Hit]:
        """``(signal, labels)`` for each pattern that matches this observation, in set order.

        An observation of several lines (a joined traceback) matches a pattern when one of
        its lines does, with the labels of the first such line: patterns keep their per-line
        meaning (``^`` is a line start) and a traceback counts once.
        """
        if "\n" in text:
            hits: dict[str, dict[str, str]] = {}
            for line in text.split("\n"):
                for signal, labels in self.match(line):
                    hits.setdefault(signal, labels)
            order = {p.signal: i for i, p in enumerate(self._patterns)}
            return sorted(hits.items(), key=lambda h: order[h[0]])
        self.stats["lines_scanned"] += 1
        if self._db is None:
            return self._confirm(text, range(len(self._patterns)), prefiltered=False)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: hyperscan needs valid UTF-8
            return self._confirm(text, range(len(self._patterns)), prefiltered=False)
        found: set[int] = set()
        self._db.scan(data, match_event_handler=_collect, context=found)
        return self._confirm(text, sorted(found | self._always))

    def _confirm(self, text: str, candidates: Iterable[int], *, prefiltered: bool = True) -> list[Hit]:
        hits: list[Hit] = []
        for i in candidates:
            p = self._patterns[i]
            try:
                m = p.search(text)
            except TimeoutError:
                self.stats["timeouts"] += 1
                continue
            if m is None:
                if prefiltered and i not in self._always:
                    self.stats["prefilter_rejects"] += 1
                continue
            self.stats["hits_confirmed"] += 1
            hits.append((p.signal, {name: (m.group(name) or "") for name in p.group_by}))
        return hits

    # -- a block of lines --

    def scan(self, block: bytes) -> list[LineHits]:
        """``(start, end, hits)`` for every line of ``block`` that matches at least one pattern.

        ``block`` holds whole lines (a last line without b"\\n" counts as one).
        Offsets index ``block`` itself; ``end`` excludes the newline. Each line
        is matched as ``block[start:end].decode("utf-8", errors="replace")``,
        which is what callers should decode it to. Lines that match nothing cost
        no Python work (hyperscan scans the whole block in C).
        """
        if not block:
            return []
        data, remapped = _valid_utf8(block)
        self.stats["lines_scanned"] += data.count(b"\n") + (not data.endswith(b"\n"))
        found: dict[int, tuple[int, set[int]]] = {}
        if self._db is not None:
            self._db.scan(data, match_event_handler=_LineCollector(data, found))
        if self._always:
            self._scan_always(data, found)
        out: list[LineHits] = []
        for start in sorted(found):
            end, ids = found[start]
            hits = self._confirm(data[start:end].decode("utf-8"), sorted(ids))
            if hits:
                out.append((start, end, hits))
        return _remap(block, data, out) if remapped else out

    def _scan_always(self, data: bytes, found: dict[int, tuple[int, set[int]]]) -> None:
        lines = data.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        start = 0
        for line in lines:
            text = line.decode("utf-8")
            for i in self._always:
                try:
                    hit = self._patterns[i].search(text) is not None
                except TimeoutError:
                    hit = True  # let _confirm count the timeout once
                if hit:
                    found.setdefault(start, (start + len(line), set()))[1].add(i)
            start += len(line) + 1


class _LineCollector:
    """Hyperscan's match callback: which patterns hit which line (by the line's start)."""

    __slots__ = ("data", "end", "found", "ids", "start")

    def __init__(self, data: bytes, found: dict[int, tuple[int, set[int]]]) -> None:
        self.data, self.found = data, found
        self.start, self.end = -1, -1
        self.ids: set[int] = set()

    def __call__(self, pid: int, _from: int, to: int, _flags: int, _ctx: object) -> None:
        last = to - 1 if to else 0  # the match's last byte decides its line
        if self.start <= last < self.end:
            self.ids.add(pid)
            return
        start = self.data.rfind(b"\n", 0, last) + 1
        end = self.data.find(b"\n", last)
        if end < 0:
            end = len(self.data)
        entry = self.found.get(start)
        if entry is None:
            entry = self.found[start] = (end, set())
        self.start, self.end, self.ids = start, end, entry[1]
        self.ids.add(pid)


def _valid_utf8(block: bytes) -> tuple[bytes, bool]:
    """The block as hyperscan needs it (valid UTF-8), and whether it had to be re-encoded."""
    if block.isascii():
        return block, False
    try:
        block.decode("utf-8")
        return block, False
    except UnicodeDecodeError:
        # a replacement never swallows a newline, so line N stays line N
        return block.decode("utf-8", errors="replace").encode("utf-8"), True


def _remap(block: bytes, data: bytes, out: list[LineHits]) -> list[LineHits]:
    """Offsets in the re-encoded data -> the same lines' offsets in the caller's block."""
    new_starts = list(accumulate((len(x) + 1 for x in data.split(b"\n")), initial=0))
    old_lines = block.split(b"\n")
    old_starts = list(accumulate((len(x) + 1 for x in old_lines), initial=0))
    mapped: list[LineHits] = []
    for start, _end, hits in out:
        k = bisect_right(new_starts, start) - 1
        mapped.append((old_starts[k], old_starts[k] + len(old_lines[k]), hits))
    return mapped
