"""Where a value's characters are in TOML, INI and .env text.

Each locator follows its format's real grammar closely enough that nothing
inside a string is taken for structure: TOML's multi-line strings, arrays
over several lines and inline tables are walked as values; INI lines are read
the way ``configparser`` reads them (whole rest of the line, continuation
lines); .env bindings are cut by ``python-dotenv``'s own parser. Whatever the
locator finds, the edit is still checked against the real parser afterwards.
"""

from __future__ import annotations

import configparser
import io
import re
import tomllib
from typing import Any

from dotenv.parser import parse_stream

from .errors import EditError
from .spans import BOM, Path, Span, split_key

# --- TOML ------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_LITERAL = re.compile(r"'[^'\n]*'")
_ATOM = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?"
    r"|[^\s,\]}#]+"
)
_BLANK = re.compile(r"[ \t]*")
_COMMENT_OR_BLANK = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")


class _TomlScanner:
    """Walks TOML text that tomllib accepted, recording where every scalar is."""

    def __init__(self, text: str, start: int) -> None:
        self.text = text
        self.i = start
        self.leaves: list[tuple[Path, Span]] = []
        self.tables: dict[Path, int] = {}  # arrays of tables: how many elements so far

    def at(self, k: int = 0) -> str:
        return self.text[self.i + k : self.i + k + 1]

    def eat(self, rx: re.Pattern[str]) -> str:
        m = rx.match(self.text, self.i)
        if m is None:
            raise EditError(f"cannot read the TOML text at character {self.i}")
        self.i = m.end()
        return m.group()

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.eat(_BLANK)
            c = self.at()
            if c == '"':
                parts.append(tomllib.loads(f"k = {self.eat(_BASIC)}")["k"])
            elif c == "'":
                parts.append(self.eat(_LITERAL)[1:-1])
            else:
                parts.append(self.eat(_BARE_KEY))
            self.eat(_BLANK)
            if self.at() != ".":
                return parts
            self.i += 1

    def multiline(self, quote: str) -> None:
        """Skip a ``\"\"\"`` or ``'''`` string; up to two more quotes belong to it."""
        self.i += 3
        while self.i < len(self.text):
            if quote == '"' and self.at() == "\\":
                self.i += 2
            elif self.text.startswith(quote * 3, self.i):
                self.i += 3
                for _ in range(2):
                    if self.at() == quote:
                        self.i += 1
                return
            else:
                self.i += 1
        raise EditError("a TOML multi-line string does not end")

    def value(self, path: Path) -> None:
        c, start = self.at(), self.i
        if self.text.startswith(('"""', "'''"), self.i):
            self.multiline(c)
            self.leaves.append((path, Span(start, self.i, self.text[start : self.i], quote=c * 3)))
        elif c in ('"', "'"):
            raw = self.eat(_BASIC if c == '"' else _LITERAL)
            self.leaves.append((path, Span(start + 1, self.i - 1, raw[1:-1], quoted=True, quote=c)))
        elif c == "[":
            self.container("]", path)
        elif c == "{":
            self.container("}", path)
        else:
            raw = self.eat(_ATOM)
            self.leaves.append((path, Span(start, self.i, raw)))

    def container(self, close: str, path: Path) -> None:
        """An array (``]``, may span lines) or an inline table (``}``)."""
        self.i += 1
        index = 0
        while True:
            self.eat(_COMMENT_OR_BLANK)
            if self.at() == close:
                self.i += 1
                return
            if close == "]":
                self.value((*path, index))
            else:
                name = self.key()
                self.expect("=")
                self.eat(_BLANK)
                self.value((*path, *name))
            index += 1
            self.eat(_COMMENT_OR_BLANK)
            if self.at() == ",":
                self.i += 1
            elif self.at() != close:
                raise EditError(f"cannot read the TOML text at character {self.i}")

    def expect(self, char: str) -> None:
        self.eat(_BLANK)
        if self.at() != char:
            raise EditError(f"cannot read the TOML text at character {self.i}")
        self.i += 1

    def header(self) -> Path:
        many = self.text.startswith("[[", self.i)
        self.i += 2 if many else 1
        names = self.key()
        self.expect("]")
        if many:
            self.expect("]")
        path: Path = ()
        for n, name in enumerate(names):
            path = (*path, name)
            last = n == len(names) - 1
            if many and last:
                self.tables[path] = self.tables.get(path, -1) + 1
                path = (*path, self.tables[path])
            elif path in self.tables:  # inside the latest element of an array of tables
                path = (*path, self.tables[path])
        return path

    def document(self) -> list[tuple[Path, Span]]:
        table: Path = ()
        while self.i < len(self.text):
            self.eat(_COMMENT_OR_BLANK)
            if self.i >= len(self.text):
                break
            if self.at() == "[":
                table = self.header()
            else:
                name = self.key()
                self.expect("=")
                self.eat(_BLANK)
                self.value((*table, *name))
        return self.leaves


def toml_span(text: str, key: str) -> Span:
    body = text.removeprefix(BOM)
    try:
        tomllib.loads(body)
    except RecursionError:
        raise EditError("not editable: the TOML nesting is too deep") from None
    except tomllib.TOMLDecodeError as exc:
        raise EditError(f"not valid TOML: {exc}") from exc
    path = tuple(split_key(key))
    try:
        leaves = _TomlScanner(text, len(text) - len(body)).document()
    except RecursionError:
        raise EditError("not editable: the TOML nesting is too deep") from None
    hits = [span for where, span in leaves if where == path]
    if not hits:
        if any(where[: len(path)] == path for where, _ in leaves):
            raise EditError(f"key {key!r} holds a table or array, not a single value")
        raise EditError(f"key {key!r} not found")
    if len(hits) > 1:
        raise EditError(f"key {key!r} is set {len(hits)} times; suture will not guess which")
    span = hits[0]
    if len(span.quote) == 3:
        raise EditError(f"key {key!r} is a multi-line string; suture edits single-line values only")
    return Span(span.start, span.end, span.text, quoted=span.quoted, quote=span.quote, path=path)


# --- INI -------------------------------------------------------------------------------

_INI = configparser.RawConfigParser


def ini_span(text: str, key: str) -> Span:
    """Read the lines as ``configparser._read`` does: value = the rest of the line, stripped."""
    section, _, option = key.rpartition(".")
    if not section or not option:
        raise EditError(f"an INI key is section.option, not {key!r}")
    wanted = (section, option.strip().lower())
    body = text.removeprefix(BOM)
    offset = len(text) - len(body)
    current, name, indent = "", "", 0
    hits: list[Span] = []
    continued: set[int] = set()
    for line in io.StringIO(body):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            offset += len(line)
            continue
        level = len(line) - len(line.lstrip())
        if current and name and level > indent:
            if (current, name) == wanted:
                continued.add(len(hits) - 1)
        else:
            indent = level
            header = _INI.SECTCRE.match(stripped)
            name = ""
            if header:
                current = header.group("header")
            elif current and (m := _INI.OPTCRE.match(stripped)):
                name = m.group("option").rstrip().lower()
                if (current, name) == wanted:
                    start = offset + level + m.start("value")
                    value = m.group("value").strip()
                    hits.append(Span(start, start + len(value), value, path=wanted))
        offset += len(line)
    if not hits:
        raise EditError(f"key {key!r} not found")
    if len(hits) > 1:
        raise EditError(f"key {key!r} is set {len(hits)} times; suture will not guess which")
    if continued:
        raise EditError(f"key {key!r} continues on the next lines; suture edits single-line values only")
    return hits[0]


# --- .env ------------------------------------------------------------------------------

_BINDING_HEAD = re.compile(
    r"\s*(?:export[^\S\r\n]+)?(?:'[^']+'|[^=#\s]+)[^\S\r\n]*=[^\S\r\n]*"
)


def _env_value_span(original: str, offset: int, value: str, path: Path) -> Span:
    head = _BINDING_HEAD.match(original)
    if head is None:
        raise EditError("cannot find the value in its .env line")
    start = offset + head.end()
    c = original[head.end() : head.end() + 1]
    if c in ("'", '"'):
        rx = re.compile(r"'((?:\\.|[^'\\])*)'" if c == "'" else r'"((?:\\.|[^"\\])*)"', re.S)
        m = rx.match(original, head.end())
        if m is None:
            raise EditError("cannot find the value in its .env line")
        inner = m.group(1)
        return Span(start + 1, start + 1 + len(inner), inner, quoted=True, quote=c, path=path)
    # unquoted: dotenv drops a `` # comment`` and trailing blanks, so the value is a prefix
    trail = " " if original[head.end() : head.end() + 1] == "#" else ""
    return Span(start, start + len(value), value, trail=trail if not value else "", path=path)


def env_span(text: str, key: str) -> Span:
    """The binding python-dotenv reads last for ``key`` (the last assignment wins)."""
    body = text.removeprefix(BOM)
    offset = len(text) - len(body)
    found: tuple[str, int, Any] | None = None
    for binding in parse_stream(io.StringIO(body)):
        if binding.key == key and not binding.error:
            found = (binding.original.string, offset, binding.value)
        offset += len(binding.original.string)
    if found is None:
        raise EditError(f"key {key!r} not found")
    original, where, value = found
    if value is None:
        raise EditError(f"key {key!r} has no '=' and no value")
    span = _env_value_span(original, where, value, (key,))
    if any(c in span.text for c in "\r\n"):  # a quoted value may run over lines; an escaped \n is fine
        raise EditError(f"key {key!r} is written over several lines; suture edits single-line values only")
    return span
