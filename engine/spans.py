"""Where a value's characters are: YAML, JSON and regex locators.

A :class:`Span` is the exact characters of one value (inside its quotes, if
any), found with positions the format's own tokenizer gives: PyYAML's
ScalarToken marks, a JSON scanner over text ``json.loads`` accepted, or a
regex's named group ``value``. TOML, INI and .env are in :mod:`.linespans`.
Nothing here decides what to write; :mod:`.values` does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor

from .errors import EditError

Format = Literal["yaml", "json", "toml", "ini", "env", "text"]
Path = tuple[Any, ...]

BOM = "\ufeff"
# the characters PyYAML (and YAML 1.1) read as line breaks
YAML_BREAKS = "\r\n\x85\u2028\u2029"


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``text[start:end]`` hold the value (without its quotes).

    ``quote`` is the quote character around it ("" when bare); ``lead`` and
    ``trail`` are what an empty value needs around new characters (``a:`` at
    the end of a file becomes ``a: 5``). ``path`` is where the value lives in
    the parsed document, ``value`` what the format's real parser reads there
    (filled in by the edit), ``anchor`` a YAML anchor on the way to it.
    """

    start: int
    end: int
    text: str
    quoted: bool = False
    quote: str = ""
    lead: str = ""
    trail: str = ""
    path: Path = ()
    value: Any = None
    anchor: str = ""

    @property
    def outer(self) -> tuple[int, int]:
        """Start and end including the quotes."""
        return self.start - len(self.quote), self.end + len(self.quote)


# --- keys ------------------------------------------------------------------------------

_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def split_key(key: str) -> list[str | int]:
    """``upstream.servers[0].port`` -> ``["upstream", "servers", 0, "port"]``."""
    parts: list[str | int] = []
    pos = 0
    for m in _KEY_PART.finditer(key):
        if m.start() != pos and key[pos:m.start()] != ".":
            raise EditError(f"cannot read key {key!r}")
        parts.append(int(m.group(2)) if m.group(2) is not None else m.group(1))
        pos = m.end()
    if pos != len(key) or not parts:
        raise EditError(f"cannot read key {key!r}")
    return parts


def render_path(path: Path) -> str:
    """``("a", 0, "b")`` -> ``a[0].b`` (how keys are written in playbooks)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) and not isinstance(part, bool) else f".{part}" if out else str(part)
    return out or "(the document)"


# --- YAML ------------------------------------------------------------------------------

_ANCHOR = re.compile(r"(?:![^\s,\[\]{}]*[ \t]+)?&([^\s,\[\]{}]+)")


def _anchor_of(text: str, node: yaml.Node) -> str:
    m = _ANCHOR.match(text, node.start_mark.index)
    return m.group(1) if m else ""


def _yaml_key(node: yaml.Node) -> Any:
    """The key as safe_load builds it (``8080:`` is the int 8080)."""
    try:
        return SafeConstructor().construct_object(node, deep=True)
    except Exception as exc:  # a key PyYAML cannot build: safe_load would fail too
        raise EditError(f"cannot read the YAML key at line {node.start_mark.line + 1}: {exc}") from exc


def _yaml_child(node: yaml.Node, part: str | int, key: str) -> tuple[Any, yaml.Node]:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
        if not found:
            raise EditError(f"key {key!r} not found (no '{part}')")
        knode, child = found[-1]  # the last duplicate wins, as in safe_load
        return _yaml_key(knode), child
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        if part >= len(node.value):
            raise EditError(f"key {key!r} not found (index {part} out of range)")
        return part, node.value[part]
    raise EditError(f"key {key!r} not found ('{part}' is not in a mapping/list)")


def _scalar_token(text: str, node: yaml.ScalarNode) -> yaml.ScalarToken | None:
    """The token whose marks hold only the value's characters (no anchor, tag or comment)."""
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if token.start_mark.index > node.end_mark.index:
            return None
        if isinstance(token, yaml.ScalarToken) and token.end_mark.index == node.end_mark.index:
            return token
    return None


def _empty_yaml_span(text: str, pos: int, path: Path, anchor: str) -> Span:
    """``a:`` / ``a: `` / ``- `` with nothing after: new characters go after one space."""
    lead = " "
    if text[pos:pos + 1] in (" ", "\t"):
        pos, lead = pos + 1, ""
    trail = " " if text[pos:pos + 1] == "#" else ""
    return Span(pos, pos, "", lead=lead, trail=trail, path=path, anchor=anchor)


def yaml_span(text: str, key: str) -> Span:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise EditError("not editable: the YAML nesting is too deep") from None
    except yaml.YAMLError as exc:
        raise EditError(f"not valid YAML: {exc}") from exc
    path: list[Any] = []
    anchor = ""
    for part in split_key(key):
        if node is None:
            raise EditError(f"key {key!r} not found (the document is empty)")
        anchor = anchor or _anchor_of(text, node)
        name, node = _yaml_child(node, part, key)
        path.append(name)
    if not isinstance(node, yaml.ScalarNode):
        raise EditError(f"key {key!r} holds a mapping or list, not a single value")
    anchor = anchor or _anchor_of(text, node)
    if node.style in ("|", ">"):
        raise EditError(f"key {key!r} is a block scalar; suture edits single-line values only")
    if node.value == "" and not node.style:
        return _empty_yaml_span(text, node.end_mark.index, tuple(path), anchor)
    token = _scalar_token(text, node)
    if token is None:
        raise EditError(f"cannot find the characters of {key!r} in the text")
    start, end = token.start_mark.index, token.end_mark.index
    raw = text[start:end]
    if any(c in raw for c in YAML_BREAKS):
        raise EditError(f"key {key!r} is written over several lines; suture edits single-line values only")
    if node.style in ('"', "'"):
        return Span(start + 1, end - 1, raw[1:-1], quoted=True, quote=node.style, path=tuple(path), anchor=anchor)
    return Span(start, end, raw, path=tuple(path), anchor=anchor)


# --- JSON ------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\r\n]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_ATOM = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|NaN|-?Infinity")


class _JsonScanner:
    """Positions of values in JSON text that json.loads accepted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def match(self, rx: re.Pattern[str], i: int) -> int:
        m = rx.match(self.text, i)
        if m is None:
            raise EditError(f"cannot read the JSON value at character {i}")
        return m.end()

    def ws(self, i: int) -> int:
        return self.match(_WS, i)

    def expect(self, i: int, chars: str) -> str:
        c = self.at(i)
        if not c or c not in chars:
            raise EditError(f"cannot read the JSON text at character {i}")
        return c

    def skip(self, i: int) -> int:
        """Index just after the value starting at ``i``."""
        c = self.at(i)
        if c == '"':
            return self.match(_STRING, i)
        if c not in ("{", "["):
            return self.match(_ATOM, i)
        close = "}" if c == "{" else "]"
        i = self.ws(i + 1)
        if self.at(i) == close:
            return i + 1
        while True:
            if c == "{":
                i = self.ws(self.skip(i))  # key
                self.expect(i, ":")
                i = self.ws(i + 1)
            i = self.ws(self.skip(i))
            if self.expect(i, "," + close) == close:
                return i + 1
            i = self.ws(i + 1)

    def find(self, i: int, part: str | int) -> int:
        """Start of the child ``part`` of the container starting at ``i``."""
        c = self.at(i)
        close = "}" if c == "{" else "]"
        i = self.ws(i + 1)
        found = -1
        index = 0
        while self.at(i) != close:
            if c == "{":
                end = self.skip(i)
                name = json.loads(self.text[i:end])
                i = self.ws(end)
                self.expect(i, ":")
                i = self.ws(i + 1)
                if name == part:
                    found = i  # the last duplicate wins, as in json.loads
            elif index == part:
                found = i
            i = self.ws(self.skip(i))
            index += 1
            if self.expect(i, "," + close) == ",":
                i = self.ws(i + 1)
        if found < 0:
            raise EditError(f"'{part}' not found")
        return found


def json_span(text: str, key: str) -> Span:
    body = text.removeprefix(BOM)
    try:
        json.loads(body)
    except RecursionError:
        raise EditError("not editable: the JSON nesting is too deep") from None
    except ValueError as exc:
        raise EditError(f"not valid JSON: {exc}") from exc
    scanner = _JsonScanner(text)
    i = scanner.ws(len(text) - len(body))
    parts = split_key(key)
    try:
        for part in parts:
            c = scanner.at(i)
            if c not in ("{", "[") or (c == "{") != isinstance(part, str):
                raise EditError(f"'{part}' is not in an object/array")
            i = scanner.find(i, part)
        end = scanner.skip(i)
    except RecursionError:
        raise EditError("not editable: the JSON nesting is too deep") from None
    except EditError as exc:
        raise EditError(f"key {key!r} not found ({exc})") from None
    if text[i] in "{[":
        raise EditError(f"key {key!r} holds an object or array, not a single value")
    if text[i] == '"':
        return Span(i + 1, end - 1, text[i + 1 : end - 1], quoted=True, quote='"', path=tuple(parts))
    return Span(i, end, text[i:end], path=tuple(parts))


# --- regex -----------------------------------------------------------------------------


def regex_span(text: str, pattern: str) -> Span:
    try:
        rx = re.compile(pattern, re.M)
    except re.error as exc:
        raise EditError(f"/{pattern}/ is not a valid regex: {exc}") from exc
    if "value" not in rx.groupindex:
        raise EditError("the regex needs a named group 'value'")
    matches = list(rx.finditer(text))
    if not matches:
        raise EditError(f"/{pattern}/ matches nothing")
    if len(matches) > 1:
        lines = ", ".join(str(text.count("\n", 0, m.start()) + 1) for m in matches[:5])
        raise EditError(f"/{pattern}/ matches {len(matches)} places (lines {lines}); make it match one")
    m = matches[0]
    if m.start("value") < 0:
        raise EditError(f"/{pattern}/ matched without its 'value' group")
    return Span(m.start("value"), m.end("value"), m.group("value"))
