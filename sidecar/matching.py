"""Matching log lines against every pattern of a source in one pass.

A :class:`PatternSet` holds every log pattern of one source. Hyperscan scans a
whole block of lines for all of them at once, in C; Python runs only for the
lines it reports. Hyperscan only *prunes*: every candidate line is confirmed
by the pattern's real regex on that one line, which also extracts the
``group_by`` labels. So the answer is exactly Python's, and a line that
matches nothing costs no Python work at all.

Both expressions are generated from Python's own parse of the pattern
(``re._parser``), never handed over as written, because the three engines
read the same text differently:

- the *prefilter* expression given to hyperscan is a guaranteed superset on
  one line: assertions and backreferences are dropped, ``\\A``/``\\Z`` become
  ``^``/``$`` (multiline), ``\\w``/``\\d``/``\\s`` match their ASCII members
  exactly and any non-ASCII character (hyperscan's Unicode tables are older
  than Python's), no class matches a newline (a match spanning two lines is
  never real), and a nullable tail (``.*``, ``\\s*$``) is cut off so a long
  line reports one hit, not one per character;
- the *confirming* expression runs on the ``regex`` module, for its timeout,
  with Python ``re`` semantics spelled out: ``\\s`` as ``re``'s 29
  characters, ``\\w``/``\\b`` from Unicode properties as ``re`` defines them,
  every literal escaped (``regex`` would read ``x{d}`` as fuzzy matching and
  ``[[:alpha:]]`` as a POSIX class), and ``re``'s extra case folds.

A pattern whose prefilter hyperscan refuses (typically one that matches the
empty string) is searched on every line instead, and ``engines()`` says so.
A confirmation that exceeds its timeout counts as no match and is counted.
Remaining difference: characters assigned after Python's Unicode version may
classify differently under ``regex``.

Not thread-safe: a PatternSet belongs to the thread that feeds it lines.
"""

from __future__ import annotations

import importlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import hyperscan
import regex
from suture.engine.playbook import LogCondition

_P: Any = importlib.import_module("re._parser")
_C: Any = importlib.import_module("re._constants")

DEFAULT_TIMEOUT = 0.05  # seconds one confirmation may take before it counts as no match
MAX_BOUNDED_REPEAT = 32  # larger bounds are widened in the prefilter (they make hyperscan compile slowly)
HS_FLAGS = hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP | hyperscan.HS_FLAG_MULTILINE

Hit = tuple[str, dict[str, str]]
LineHits = tuple[int, int, list[Hit]]


class Untranslatable(Exception):
    """A parse tree node the translators do not know (a newer Python, say)."""


# --- code point sets (for the prefilter) ---------------------------------------------

Ranges = list[tuple[int, int]]
NL = 0x0A
MAX_CP = 0x10FFFF
NON_ASCII: Ranges = [(0x80, 0xD7FF), (0xE000, MAX_CP)]
ASCII_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
ASCII_DIGIT: Ranges = [(0x30, 0x39)]
# Python's str.isspace() includes the information separators 0x1c-0x1f
ASCII_SPACE_UNICODE: Ranges = [(0x09, 0x0D), (0x1C, 0x20)]
ASCII_SPACE_ASCII: Ranges = [(0x09, 0x0D), (0x20, 0x20)]
# non-ASCII characters ``re`` folds onto an ASCII letter under IGNORECASE (checked by a test)
FOLD_PARTNERS = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}
FOLD_BACK = {ch: letter for letter, chars in FOLD_PARTNERS.items() for ch in chars}


def _norm(ranges: Iterable[tuple[int, int]]) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(ranges: Ranges) -> Ranges:
    out: Ranges = []
    nxt = 0
    for lo, hi in _norm(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return out


def _without_newline(ranges: Ranges) -> Ranges:
    return _norm([r for lo, hi in ranges for r in ((lo, min(hi, NL - 1)), (max(lo, NL + 1), hi)) if r[0] <= r[1]])


def _hs_char(cp: int) -> str:
    return chr(cp) if chr(cp).isascii() and chr(cp).isalnum() else f"\\x{{{cp:X}}}"


def _hs_class(ranges: Ranges) -> str:
    ranges = _without_newline(ranges)
    if not ranges:
        return "\\n"  # a class of only a newline: never inside one line, so any stand-in will do
    body = "".join(_hs_char(lo) if lo == hi else f"{_hs_char(lo)}-{_hs_char(hi)}" for lo, hi in ranges)
    return f"[{body}]"


def _ascii_cased(cp: int) -> Ranges:
    ch = chr(cp)
    return [(ord(c), ord(c)) for c in {ch.lower(), ch.upper()}]


# --- the prefilter: a superset of the pattern on one line, for hyperscan -----------------


class _Prefilter:
    """Emits hyperscan syntax that matches (on one line) whenever Python's pattern does."""

    def seq(self, items: Iterable[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op: Any, av: Any, flags: int) -> str:  # noqa: C901 - one branch per node type
        if op is _C.LITERAL:
            return _hs_class(self._literal(av, flags)) if (flags & re.IGNORECASE) else _hs_char(av)
        if op is _C.NOT_LITERAL:
            return _hs_class(_complement(self._members(_C.LITERAL, av, flags)))
        if op is _C.ANY:
            return "[^\\n]"
        if op is _C.IN:
            negate = bool(av) and av[0][0] is _C.NEGATE
            items = av[1:] if negate else av
            if negate:  # exclude only what is surely a member: the complement is then a superset
                return _hs_class(_complement(_norm(r for o, a in items for r in self._members(o, a, flags))))
            return _hs_class(_norm(r for o, a in items for r in self._superset(o, a, flags)))
        if op is _C.AT:
            if av in (_C.AT_BEGINNING, _C.AT_BEGINNING_STRING):
                return "^"
            if av in (_C.AT_END, _C.AT_END_STRING):
                return "$"
            return ""  # word boundaries: dropping an assertion only widens the match
        if op is _C.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags) for alt in av[1]) + ")"
        if op is _C.SUBPATTERN:
            _gid, add, delete, sub = av
            return "(?:" + self.seq(sub, (flags | add) & ~delete) + ")"
        if op is _C.ATOMIC_GROUP:
            return "(?:" + self.seq(av, flags) + ")"
        if op in (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            inner = self.seq(sub, flags)
            if not inner:
                return ""
            if hi != _C.MAXREPEAT and hi <= MAX_BOUNDED_REPEAT:
                return f"(?:{inner}){{{lo},{hi}}}"
            # a large bound costs hyperscan seconds to compile; an open one is a superset and cheap
            return f"(?:{inner}){{{min(lo, MAX_BOUNDED_REPEAT)},}}"
        if op in (_C.ASSERT, _C.ASSERT_NOT):
            return ""
        if op is _C.GROUPREF:
            return "[^\\n]*"  # whatever the group matched, it was on this line
        if op is _C.GROUPREF_EXISTS:
            _gid, yes, no = av
            return "(?:" + self.seq(yes, flags) + "|" + (self.seq(no, flags) if no else "") + ")"
        raise Untranslatable(f"unknown node {op}")

    def _literal(self, cp: int, flags: int) -> Ranges:
        """Every character a literal may match (IGNORECASE), as a superset."""
        ch = chr(cp)
        if ch.isascii():
            out = _ascii_cased(cp)
            if not (flags & re.ASCII):
                out += [(ord(c), ord(c)) for c in FOLD_PARTNERS.get(ch.lower(), "")]
            return out
        back = FOLD_BACK.get(ch)
        return [*NON_ASCII, *(_ascii_cased(ord(back)) if back else [])]

    def _superset(self, op: Any, av: Any, flags: int) -> Ranges:
        """Characters a class member may match, widened to all of non-ASCII where tables may differ."""
        icase = bool(flags & re.IGNORECASE)
        if op is _C.LITERAL:
            return self._literal(av, flags) if icase else [(av, av)]
        if op is _C.RANGE:
            lo, hi = av
            if not icase:
                return [(lo, hi)]
            ascii_part = [r for cp in range(lo, min(hi, 0x7F) + 1) for r in self._literal(cp, flags)]
            return ascii_part + ([*NON_ASCII, (0x41, 0x5A), (0x61, 0x7A)] if hi >= 0x80 else [])
        if op is _C.CATEGORY:
            if av in _NEGATED:  # everything outside the ASCII members of the positive category
                return _complement(self._category_ascii(_NEGATED[av], flags))
            return self._category_ascii(av, flags) + ([] if flags & re.ASCII else NON_ASCII)
        raise Untranslatable(f"unknown class member {op}")

    def _members(self, op: Any, av: Any, flags: int) -> Ranges:
        """Characters that are surely members of a class member (a subset)."""
        if op is _C.LITERAL:
            return _ascii_cased(av) if (flags & re.IGNORECASE) and chr(av).isascii() else [(av, av)]
        if op is _C.RANGE:
            lo, hi = av
            extra = [r for cp in range(lo, min(hi, 0x7F) + 1) for r in _ascii_cased(cp)] if flags & re.IGNORECASE else []
            return [(lo, hi), *extra]
        if op is _C.CATEGORY:
            if av in _NEGATED:  # the ASCII characters outside the positive category
                outside = _complement(self._category_ascii(_NEGATED[av], flags))
                return [(lo, min(hi, 0x7F)) for lo, hi in outside if lo <= 0x7F]
            return self._category_ascii(av, flags)
        raise Untranslatable(f"unknown class member {op}")

    @staticmethod
    def _category_ascii(cat: Any, flags: int) -> Ranges:
        if cat is _C.CATEGORY_DIGIT:
            return list(ASCII_DIGIT)
        if cat is _C.CATEGORY_WORD:
            return list(ASCII_WORD)
        if cat is _C.CATEGORY_SPACE:
            return list(ASCII_SPACE_ASCII if flags & re.ASCII else ASCII_SPACE_UNICODE)
        raise Untranslatable(f"unknown category {cat}")


_NEGATED = {
    _C.CATEGORY_NOT_DIGIT: _C.CATEGORY_DIGIT,
    _C.CATEGORY_NOT_WORD: _C.CATEGORY_WORD,
    _C.CATEGORY_NOT_SPACE: _C.CATEGORY_SPACE,
}
_REPEATS = (_C.MAX_REPEAT, _C.MIN_REPEAT, _C.POSSESSIVE_REPEAT)


def trim_tail(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Cut what may match nothing off the end (``.*``, ``\\s*$``, ``x{2,}`` -> ``x{2}``).

    The rest still matches on the same line wherever the whole did, so it stays a
    superset, and hyperscan reports one hit per occurrence instead of one per
    character of a trailing ``.*``.
    """
    items = list(items)
    while items:
        op, av = items[-1]
        if op in (_C.AT, _C.ASSERT, _C.ASSERT_NOT, _C.GROUPREF) or (op in _REPEATS and av[0] == 0):
            items.pop()
        elif op in _REPEATS:
            items[-1] = (op, (av[0], av[0], av[2]))
            return items
        elif op is _C.SUBPATTERN:
            inner = trim_tail(list(av[3]))
            if not inner:
                items.pop()
                continue
            items[-1] = (op, (av[0], av[1], av[2], inner))
            return items
        else:
            return items
    return items


# --- the confirmation: Python's semantics, spelled out for the regex module ------------

_WORD = r"[\p{L}\p{N}_]"  # re's \w is str.isalnum() or "_"
_NOT_WORD = r"[^\p{L}\p{N}_]"
_ASCII_WORD = "[0-9A-Za-z_]"
_SPACE_CHARS = "".join(c for c in map(chr, range(0x3100)) if re.fullmatch(r"\s", c))
_TURKISH_I = "iI\u0130\u0131"  # the one fold where re and regex disagree


def _rx_char(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and (ch.isalnum() or ch == "_"):
        return ch
    return f"\\x{cp:02x}" if cp < 0x100 else (f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}")


class _Exact:
    """Emits ``regex`` syntax with exactly Python ``re``'s meaning, groups and names kept."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names

    def seq(self, items: Iterable[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op: Any, av: Any, flags: int) -> str:
        if op is _C.LITERAL:
            return self._cased(self._literal(av, flags), flags)
        if op is _C.NOT_LITERAL:
            return self._class([(_C.LITERAL, av)], negate=True, flags=flags)
        if op is _C.ANY:
            return "(?s:.)" if flags & re.DOTALL else "[^\\n]"
        if op is _C.IN:
            negate = bool(av) and av[0][0] is _C.NEGATE
            return self._class(av[1:] if negate else av, negate=negate, flags=flags)
        if op is _C.AT:
            return self._at(av, flags)
        if op is _C.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags) for alt in av[1]) + ")"
        if op is _C.SUBPATTERN:
            gid, add, delete, sub = av
            inner = self.seq(sub, (flags | add) & ~delete)
            if gid is None:
                return f"(?:{inner})"
            name = self.names.get(gid)
            return f"(?P<{name}>{inner})" if name else f"({inner})"
        if op is _C.ATOMIC_GROUP:
            return f"(?>{self.seq(av, flags)})"
        if op in _REPEATS:
            lo, hi, sub = av
            mode = {_C.MAX_REPEAT: "", _C.MIN_REPEAT: "?", _C.POSSESSIVE_REPEAT: "+"}[op]
            return f"(?:{self.seq(sub, flags)}){{{lo},{'' if hi == _C.MAXREPEAT else hi}}}{mode}"
        if op in (_C.ASSERT, _C.ASSERT_NOT):
            direction, sub = av
            kind = ("=" if op is _C.ASSERT else "!") if direction > 0 else ("<=" if op is _C.ASSERT else "<!")
            return f"(?{kind}{self.seq(sub, flags)})"
        if op is _C.GROUPREF:
            return f"(?:\\{av})"
        if op is _C.GROUPREF_EXISTS:
            gid, yes, no = av
            return f"(?({gid}){self.seq(yes, flags)}" + (f"|{self.seq(no, flags)})" if no else ")")
        raise Untranslatable(f"unknown node {op}")

    @staticmethod
    def _cased(text: str, flags: int) -> str:
        # regex folds Unicode even in an (?a:...) scope, so ASCII-only folding is spelled out instead
        return f"(?i:{text})" if flags & re.IGNORECASE and not flags & re.ASCII else text

    @staticmethod
    def _literal(cp: int, flags: int) -> str:
        if not flags & re.IGNORECASE:
            return _rx_char(cp)
        if flags & re.ASCII:
            return f"[{chr(cp).lower()}{chr(cp).upper()}]" if _ascii_letter(cp) else _rx_char(cp)
        if chr(cp) in _TURKISH_I:
            same = "".join(c for c in _TURKISH_I if re.fullmatch(re.escape(chr(cp)), c, re.IGNORECASE))
            return f"[{same}]"
        return _rx_char(cp)

    def _at(self, at: Any, flags: int) -> str:
        multiline = bool(flags & re.MULTILINE)
        if at is _C.AT_BEGINNING:
            return "(?m:^)" if multiline else "^"
        if at is _C.AT_END:
            return "(?m:$)" if multiline else "$"
        if at is _C.AT_BEGINNING_STRING:
            return "\\A"
        if at is _C.AT_END_STRING:
            return "\\Z"
        w = _ASCII_WORD if flags & re.ASCII else _WORD
        if at is _C.AT_BOUNDARY:
            return f"(?:(?<={w})(?!{w})|(?<!{w})(?={w}))"
        if at is _C.AT_NON_BOUNDARY:  # Python 3.11: never true in an empty string
            return f"(?:(?=(?s:.))|(?<=(?s:.)))(?:(?<={w})(?={w})|(?<!{w})(?!{w}))"
        raise Untranslatable(f"unknown assertion {at}")

    def _class(self, items: list[tuple[Any, Any]], *, negate: bool, flags: int) -> str:
        parts: list[str] = []
        not_word = False
        ascii_only = bool(flags & re.ASCII)
        ascii_fold = bool(flags & re.IGNORECASE) and ascii_only
        for op, av in items:
            if op is _C.LITERAL:
                parts.append(_rx_char(av) + (chr(av).swapcase() if ascii_fold and _ascii_letter(av) else ""))
            elif op is _C.RANGE:
                parts.append(f"{_rx_char(av[0])}-{_rx_char(av[1])}")
                if ascii_fold:
                    parts.extend(_swapped_letters(*av))
            elif op is _C.CATEGORY:
                if av is _C.CATEGORY_NOT_WORD and not ascii_only:
                    not_word = True  # not expressible inside one regex V0 class
                else:
                    parts.append(_category_members(av, ascii_only))
            else:
                raise Untranslatable(f"unknown class member {op}")
        if flags & re.IGNORECASE and not ascii_only:
            parts.append(self._turkish_fix(items, negate=negate, flags=flags))
        body = "".join(parts)
        if not not_word:
            return self._cased(f"[{'^' if negate else ''}{body}]", flags)
        rest = self._cased(f"[{body}]", flags) if body else ""
        if negate:  # neither in rest nor a non-word character: a word character not in rest
            return f"(?:(?!{rest}){_WORD})" if rest else _WORD
        return f"(?:{rest}|{_NOT_WORD})" if rest else _NOT_WORD

    @staticmethod
    def _turkish_fix(items: list[tuple[Any, Any]], *, negate: bool, flags: int) -> str:
        """The dotted/dotless i's ``re`` puts in this class (IGNORECASE) that ``regex`` would not."""
        source = "".join(_re_member(op, av) for op, av in items)
        try:
            compiled = re.compile(f"[{'^' if negate else ''}{source}]", flags & (re.IGNORECASE | re.ASCII))
        except re.error as exc:
            raise Untranslatable(str(exc)) from exc
        inside = [c for c in _TURKISH_I if bool(compiled.fullmatch(c)) != negate]
        return "".join(_rx_char(ord(c)) for c in inside)


def _ascii_letter(cp: int) -> bool:
    return chr(cp).isascii() and chr(cp).isalpha()


def _swapped_letters(lo: int, hi: int) -> list[str]:
    """The other case of the ASCII letters in lo..hi, as class ranges."""
    out = []
    for first, last in ((0x41, 0x5A), (0x61, 0x7A)):
        a, b = max(lo, first), min(hi, last)
        if a <= b:
            out.append(f"{chr(a).swapcase()}-{chr(b).swapcase()}")
    return out


def _category_members(cat: Any, ascii_only: bool) -> str:
    if cat is _C.CATEGORY_DIGIT:
        return "0-9" if ascii_only else r"\p{Nd}"
    if cat is _C.CATEGORY_NOT_DIGIT:
        return r"\x00-/:-\U0010ffff" if ascii_only else r"\P{Nd}"
    if cat is _C.CATEGORY_WORD:
        return "0-9A-Za-z_" if ascii_only else r"\p{L}\p{N}_"
    if cat is _C.CATEGORY_NOT_WORD:  # ASCII only; the Unicode form is handled by the caller
        return r"\x00-/:-@\[-\^`{-\U0010ffff"
    spaces = " \t\n\r\f\v" if ascii_only else _SPACE_CHARS
    space_ranges = _norm((ord(c), ord(c)) for c in spaces)
    if cat is _C.CATEGORY_SPACE:
        chosen = space_ranges
    elif cat is _C.CATEGORY_NOT_SPACE:
        chosen = _complement(space_ranges)
    else:
        raise Untranslatable(f"unknown category {cat}")
    return "".join(_rx_char(lo) if lo == hi else f"{_rx_char(lo)}-{_rx_char(hi)}" for lo, hi in chosen)


def _re_member(op: Any, av: Any) -> str:
    """A class member back in ``re`` syntax (to ask ``re`` itself about the odd case folds)."""
    if op is _C.LITERAL:
        return f"\\U{av:08x}"
    if op is _C.RANGE:
        return f"\\U{av[0]:08x}-\\U{av[1]:08x}"
    names = {_C.CATEGORY_DIGIT: "\\d", _C.CATEGORY_NOT_DIGIT: "\\D", _C.CATEGORY_WORD: "\\w",
             _C.CATEGORY_NOT_WORD: "\\W", _C.CATEGORY_SPACE: "\\s", _C.CATEGORY_NOT_SPACE: "\\S"}
    return names[av]


def nullable(items: Iterable[tuple[Any, Any]]) -> bool:
    """Whether a sequence can match without consuming a character (hyperscan cannot prefilter that)."""
    return all(_nullable_item(op, av) for op, av in items)


def _nullable_item(op: Any, av: Any) -> bool:
    if op in (_C.LITERAL, _C.NOT_LITERAL, _C.ANY, _C.IN):
        return False
    if op is _C.BRANCH:
        return any(nullable(alt) for alt in av[1])
    if op is _C.SUBPATTERN:
        return nullable(av[3])
    if op is _C.ATOMIC_GROUP:
        return nullable(av)
    if op in _REPEATS:
        return av[0] == 0 or nullable(av[2])
    if op is _C.GROUPREF_EXISTS:
        return nullable(av[1]) or not av[2] or nullable(av[2])
    return True  # assertions, anchors, backreferences (a group may match nothing)


def translate(pattern: str) -> tuple[str | None, str]:
    """``(prefilter for hyperscan, exact regex for the regex module)`` of a Python pattern.

    The prefilter is None when the pattern can match an empty string: such a
    pattern cannot be prefiltered by what it consumes.
    """
    try:
        tree = _P.parse(pattern)
    except re.error as exc:
        raise Untranslatable(f"invalid pattern: {exc}") from exc
    flags = tree.state.flags
    names = {gid: name for name, gid in tree.state.groupdict.items()}
    items = list(tree)
    exact = _Exact(names).seq(items, flags)
    if nullable(items):
        return None, exact
    return _Prefilter().seq(trim_tail(items), flags), exact


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
