"""The confirmation: a ``regex`` module expression with exactly Python ``re``'s meaning.

It runs on the ``regex`` module for its timeout, with ``re`` semantics spelled
out: ``\\s`` as ``re``'s 29 characters, ``\\w``/``\\b`` from Unicode properties
as ``re`` defines them, every literal escaped (``regex`` would read ``x{d}`` as
fuzzy matching and ``[[:alpha:]]`` as a POSIX class), and ``re``'s extra case
folds. Groups and their names are kept, so labels come out as ``re`` gives them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .pattern_tree import REPEATS, Untranslatable, complement, norm
from .pattern_tree import constants as _C

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


class Exact:
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
        if op in REPEATS:
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
    space_ranges = norm((ord(c), ord(c)) for c in spaces)
    if cat is _C.CATEGORY_SPACE:
        chosen = space_ranges
    elif cat is _C.CATEGORY_NOT_SPACE:
        chosen = complement(space_ranges)
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
