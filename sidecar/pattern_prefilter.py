"""The prefilter: a hyperscan expression that matches, on one line, wherever Python's pattern does.

A guaranteed superset on one line (``sidecar.matching`` confirms every candidate
with the exact expression): assertions and backreferences are dropped,
``\\A``/``\\Z`` become ``^``/``$`` (multiline), ``\\w``/``\\d``/``\\s`` match
their ASCII members exactly and any non-ASCII character (hyperscan's Unicode
tables are older than Python's), no class matches a newline (a match spanning
two lines is never real), and a nullable tail (``.*``, ``\\s*$``) is cut off
so a long line reports one hit, not one per character. A pattern that can
match the empty string (:func:`nullable`) cannot be prefiltered at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .pattern_tree import MAX_CP, REPEATS, Ranges, Untranslatable, complement, norm
from .pattern_tree import constants as _C

MAX_BOUNDED_REPEAT = 32  # larger bounds are widened in the prefilter (they make hyperscan compile slowly)
NL = 0x0A
NON_ASCII: Ranges = [(0x80, 0xD7FF), (0xE000, MAX_CP)]
ASCII_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
ASCII_DIGIT: Ranges = [(0x30, 0x39)]
# Python's str.isspace() includes the information separators 0x1c-0x1f
ASCII_SPACE_UNICODE: Ranges = [(0x09, 0x0D), (0x1C, 0x20)]
ASCII_SPACE_ASCII: Ranges = [(0x09, 0x0D), (0x20, 0x20)]
# non-ASCII characters ``re`` folds onto an ASCII letter under IGNORECASE (checked by a test)
FOLD_PARTNERS = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}
FOLD_BACK = {ch: letter for letter, chars in FOLD_PARTNERS.items() for ch in chars}


def _without_newline(ranges: Ranges) -> Ranges:
    return norm([r for lo, hi in ranges for r in ((lo, min(hi, NL - 1)), (max(lo, NL + 1), hi)) if r[0] <= r[1]])


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


class Prefilter:
    """Emits hyperscan syntax that matches (on one line) whenever Python's pattern does."""

    def seq(self, items: Iterable[tuple[Any, Any]], flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op: Any, av: Any, flags: int) -> str:  # noqa: C901 - one branch per node type
        if op is _C.LITERAL:
            return _hs_class(self._literal(av, flags)) if (flags & re.IGNORECASE) else _hs_char(av)
        if op is _C.NOT_LITERAL:
            return _hs_class(complement(self._members(_C.LITERAL, av, flags)))
        if op is _C.ANY:
            return "[^\\n]"
        if op is _C.IN:
            negate = bool(av) and av[0][0] is _C.NEGATE
            items = av[1:] if negate else av
            if negate:  # exclude only what is surely a member: the complement is then a superset
                return _hs_class(complement(norm(r for o, a in items for r in self._members(o, a, flags))))
            return _hs_class(norm(r for o, a in items for r in self._superset(o, a, flags)))
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
                return complement(self._category_ascii(_NEGATED[av], flags))
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
                outside = complement(self._category_ascii(_NEGATED[av], flags))
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


def trim_tail(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Cut what may match nothing off the end (``.*``, ``\\s*$``, ``x{2,}`` -> ``x{2}``).

    The rest still matches on the same line wherever the whole did, so it stays a
    superset, and hyperscan reports one hit per occurrence instead of one per
    character of a trailing ``.*``.
    """
    items = list(items)
    while items:
        op, av = items[-1]
        if op in (_C.AT, _C.ASSERT, _C.ASSERT_NOT, _C.GROUPREF) or (op in REPEATS and av[0] == 0):
            items.pop()
        elif op in REPEATS:
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
    if op in REPEATS:
        return av[0] == 0 or nullable(av[2])
    if op is _C.GROUPREF_EXISTS:
        return nullable(av[1]) or not av[2] or nullable(av[2])
    return True  # assertions, anchors, backreferences (a group may match nothing)
