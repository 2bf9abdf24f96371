"""Python tracebacks read line by line become one observation: the joiner of a followed file.

A Python traceback becomes one piece whose text is its lines joined with "\\n": from a
``Traceback (most recent call last):`` line (or an exception group's ``+ Exception Group
Traceback`` line) through the indented frame, source and caret lines to the exception
line, and on through chained tracebacks (blank line, "During handling of the above
exception..." or "The above exception was the direct cause...", blank line, next
traceback). A line that does not continue it ends it (a log line before the header is
never glued). Pure: no I/O, no clock; ``sidecar.sources.followed`` feeds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import utf8_cut

TB_MARK = b"Traceback (most recent call last):"  # also in an exception group's header
_TB_HEADER = TB_MARK.decode()
_EG_HEADER = re.compile(r"[ \t]*\+ Exception Group Traceback \(most recent call last\):")
_EG_LINE = re.compile(r"[ \t]+[|+]")  # every line of an exception group's traceback
_EG_END = re.compile(r"[ \t]*\+-+")  # a group's closing rule: it may be the last line
_EXC_LINE = re.compile(r"[^\W\d][\w.<>]*(?:: .*)?")  # KeyError, pkg.mod.Error: msg, f.<locals>.E
_CHAINED = frozenset((
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
))


@dataclass(frozen=True, slots=True)
class Piece:
    """A decoded line on its way to becoming a Line (or several joined ones: a traceback)."""

    text: str
    truncated: bool
    at: float
    start: int = 0  # file offset of its first byte
    cont: bool = False  # it continues a flushed partial line
    lines: int = 1  # physical lines joined into it
    capped: bool = False  # a traceback cut at its cap


def _header(text: str) -> str | None:
    """The traceback kind ``text`` starts: "tb", "eg" (an exception group) or None."""
    if text == _TB_HEADER:
        return "tb"
    return "eg" if _EG_HEADER.fullmatch(text) else None


class Joiner:
    """Joins the lines of a Python traceback into one piece; one per file, pure (no I/O, no clock).

    Lines pass through until a traceback header; each later line continues the traceback or ends
    it. A traceback that may be complete (its exception line, or a group's closing rule, was seen)
    waits for the next line: a blank line, a chaining sentence and a blank line are held as
    look-ahead until the next header proves a chain (or anything else ends the traceback before
    them). Nothing held is consumed: resume_point() is where a checkpoint must stay. At the cap the
    traceback is emitted truncated at once and the rest of it is dropped as it is read (``discard``).
    """

    def __init__(self, max_lines: int, max_bytes: int, skip: str = "") -> None:
        self._max_lines, self._max_bytes = max_lines, max_bytes
        self.mode: str | None = skip.rstrip("!") or None  # "tb" or "eg": inside a traceback
        self.complete = skip.endswith("!")  # the last line may have been its last
        self.discard = bool(skip)  # emitted at the cap: drop the rest of this traceback
        self._first: Piece | None = None
        self._texts: list[str] = []
        self._size = 0  # bytes of "\n".join(self._texts)
        self._truncated = False
        self._look: list[Piece] = []  # blank, chaining sentence, blank: a chain until proven otherwise

    @property
    def holding(self) -> bool:
        """Lines were read that are neither emitted nor dropped."""
        return self.mode is not None and (not self.discard or bool(self._look))

    def resume_point(self, offset: int, cont: bool) -> tuple[int, bool, str]:
        """(offset, cont, skip) for a checkpoint, given where the caller's framing stands."""
        if self.mode is None:
            return offset, cont, ""
        if not self.discard and self._first is not None:
            return self._first.start, self._first.cont, ""
        if self._look:
            return self._look[0].start, self._look[0].cont, self.mode + "!"
        return offset, cont, self.mode + ("!" if self.complete else "")

    def feed(self, piece: Piece) -> list[Piece]:
        """What is ready after ``piece``: lines passed through, finished tracebacks."""
        out: list[Piece] = []
        self._step(piece, out)
        return out

    def expire(self, idle: float, complete_after: float, unfinished_after: float) -> list[Piece]:
        """Flush a traceback whose file has not grown for long enough (shorter when it may be complete)."""
        if self.mode is None or idle < (complete_after if self.complete or self._look else unfinished_after):
            return []
        return self.flush()

    def flush(self) -> list[Piece]:
        """End whatever is held: the traceback so far, then the look-ahead as plain lines."""
        out: list[Piece] = []
        if self.mode is not None:
            look, self._look = self._look, []
            self._end(out)
            for piece in look:
                self._step(piece, out)
        return out

    def _step(self, piece: Piece, out: list[Piece]) -> None:
        text = piece.text
        if self.mode is None:
            mode = _header(text)
            if mode is None:
                out.append(piece)
            else:
                self.mode, self.complete, self.discard, self._first = mode, False, False, piece
                self._add(piece, out)
        elif self._look:
            self._chain(piece, out)
        elif self.mode == "eg" and _EG_LINE.match(text):
            self._add(piece, out)
            self.complete = _EG_END.fullmatch(text) is not None
        elif self.mode == "tb" and not self.complete and text.startswith((" ", "\t")):
            self._add(piece, out)  # a frame, source, caret, "...<N lines>..." or "[Previous line repeated]"
        elif self.mode == "tb" and not self.complete and _EXC_LINE.fullmatch(text):
            self._add(piece, out)
            self.complete = True
        elif self.complete and not text:
            self._look.append(piece)
        else:
            self._end(out)
            self._step(piece, out)

    def _chain(self, piece: Piece, out: list[Piece]) -> None:
        self._look.append(piece)
        n, text = len(self._look), piece.text
        chaining = text in _CHAINED or (piece.truncated and any(c.startswith(text) for c in _CHAINED))
        if (n == 2 and chaining) or (n == 3 and not text):  # (a tiny line cap may cut the sentence)
            return
        mode = _header(text) if n == 4 else None
        look, self._look = self._look, []
        if mode is not None:  # a chained traceback: the look-ahead belongs to it
            for held in look:
                self._add(held, out)
            self.mode, self.complete = mode, False
            return
        self._end(out)
        for held in look:
            self._step(held, out)

    def _add(self, piece: Piece, out: list[Piece]) -> None:
        if self.discard:
            return
        data = piece.text.encode()
        sep = 1 if self._texts else 0
        if len(self._texts) < self._max_lines and self._size + sep + len(data) <= self._max_bytes:
            self._texts.append(piece.text)
            self._size += sep + len(data)
            self._truncated |= piece.truncated
            return
        room = self._max_bytes - self._size - sep
        if len(self._texts) < self._max_lines and room > 0:
            self._texts.append(utf8_cut(data[:room]).decode("utf-8", errors="replace"))
        self._emit(out, capped=True)
        self.discard = True

    def _end(self, out: list[Piece]) -> None:
        if not self.discard:
            self._emit(out, capped=False)
        self.mode, self.complete, self.discard = None, False, False

    def _emit(self, out: list[Piece], *, capped: bool) -> None:
        if self._first is not None and self._texts:
            out.append(Piece("\n".join(self._texts), self._truncated or capped, self._first.at,
                             lines=len(self._texts), capped=capped))
        self._first, self._texts, self._size, self._truncated = None, [], 0, False
