"""Text from the watched world, made safe for a report: no terminal escapes, no markup.

A report carries strings suture did not write: log lines, alert labels, probe details, file contents,
reasons that quote them. Each goes through :func:`clean` (ANSI escapes removed, other control
characters, lone surrogates and bidirectional overrides replaced by ``?``), then into Markdown one
of three ways, each checked against a CommonMark parser by the suite:

- :func:`fenced`: lines in a fenced code block whose fence is longer than any run of backticks in
  them (CommonMark closes a fence only with a run at least as long), so nothing inside is markup;
- :func:`code`: one value as a code span, its backtick string longer than any run inside;
- :func:`inline`: free text with every Markdown and HTML metacharacter backslash-escaped.

Lines longer than :data:`MAX_LINE` characters are cut, and the cut says how much was left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_LINE = 400  # characters of one line shown in a report

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and any other two-character escape
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b[0-?]*[ -/]*[@-~]")
# C0 and C1 controls but tab, DEL, lone surrogates, bidirectional embeddings, overrides and isolates
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_BACKTICKS = re.compile(r"`+")
# what CommonMark (with GFM tables and strikethrough) reads as markup mid-line: an underscore only where it can
# open or close emphasis (not inside a word, so rate_limit stays readable)
_META = re.compile(r"([\\`*\[\]<&|~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")


def clean(text: str, *, tabs: bool = True) -> str:
    """``text`` without ANSI escapes, with every other control character as ``?`` (tabs kept if ``tabs``)."""
    out = _CONTROL.sub("?", _ANSI.sub("", text))
    return out if tabs else out.replace("\t", " ")


def cap(text: str, most: int = MAX_LINE) -> str:
    """``text`` cut to ``most`` characters, saying how many were left out."""
    if len(text) <= most:
        return text
    return text[:most] + f" [... cut: {len(text) - most} more characters]"


def longest_backticks(text: str) -> int:
    return max((len(m) for m in _BACKTICKS.findall(text)), default=0)


def fenced(lines: Iterable[str], info: str = "text", most: int | None = MAX_LINE) -> str:
    """A fenced code block of ``lines`` (each cleaned, and capped at ``most``): nothing in it is read as markup."""
    body = [clean(line) if most is None else cap(clean(line), most) for line in lines]
    fence = "`" * max(3, longest_backticks("\n".join(body)) + 1)
    return "\n".join([fence + info, *body, fence])


def code(text: str) -> str:
    """``text`` (cleaned, capped, one line) as a code span."""
    value = cap(clean(text, tabs=False))
    ticks = "`" * (longest_backticks(value) + 1)
    if value.startswith(("`", " ")) or value.endswith(("`", " ")):
        value = f" {value} "  # CommonMark strips one space each side: backticks at the edges stay content
    return f"{ticks}{value}{ticks}"


def inline(text: str) -> str:
    """``text`` (cleaned, capped, one line) with Markdown and HTML metacharacters escaped."""
    return _META.sub(r"\\\1", cap(clean(text, tabs=False)))


def plain(text: str, most: int = MAX_LINE) -> str:
    """``text`` for a plain-text line (a notification, a title): cleaned, one line, capped."""
    return cap(clean(text, tabs=False), most)
