"""Surgical edits of text: find the exact characters of one value, replace only those.

Every format works the same way: locate the *span* of the value (start and end
offsets in the decoded text) with a parser that knows positions, splice the
new value's characters in, then re-parse the result and check that the only
difference is the value we meant to change. Comments, order, quoting, anchors,
line endings, a BOM and the trailing newline are kept because they are never
rewritten: only the value's characters change.

- YAML: PyYAML's composer gives each scalar's marks.
- JSON: a small scanner over text that ``json.loads`` already accepted.
- TOML, INI, .env: line scanners (``[table]``/``[section]`` headers and
  ``key = value`` lines), checked afterwards with ``tomllib`` / ``configparser``.
- regex (any text file): the named group ``value``.

Pure functions of text; nothing here reads or writes files.
"""

from __future__ import annotations

import configparser
import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Literal

import yaml

from .errors import AtBound, EditError

Format = Literal["yaml", "json", "toml", "ini", "env", "text"]


def format_of(path: str) -> Format:
    name = PurePath(path).name.lower()
    suffix = PurePath(name).suffix
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml"
    if suffix in (".ini", ".cfg", ".conf"):
        return "ini"
    if name == ".env" or name.startswith(".env.") or suffix == ".env":
        return "env"
    return "text"


@dataclass(frozen=True, slots=True)
class Span:
    """Characters ``text[start:end]`` hold the value (without quotes)."""

    start: int
    end: int
    text: str
    quoted: bool = False


def splice(text: str, span: Span, new: str) -> str:
    return text[: span.start] + new + text[span.end :]


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


# --- YAML ------------------------------------------------------------------------------


def _yaml_span(text: str, key: str) -> Span:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise EditError(f"not valid YAML: {exc}") from exc
    for part in split_key(key):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            found = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part]
            if not found:
                raise EditError(f"key {key!r} not found (no '{part}')")
            node = found[-1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                raise EditError(f"key {key!r} not found (index {part} out of range)")
            node = node.value[part]
        else:
            raise EditError(f"key {key!r} not found ('{part}' is not in a mapping/list)")
    if not isinstance(node, yaml.ScalarNode):
        raise EditError(f"key {key!r} holds a mapping or list, not a single value")
    if node.style in ("|", ">"):
        raise EditError(f"key {key!r} is a block scalar; suture edits single-line values only")
    start, end = node.start_mark.index, node.end_mark.index
    # skip an anchor or tag written before the value (``&x 1``, ``!!float 1``)
    while text[start] in "&!":
        while start < end and not text[start].isspace():
            start += 1
        while start < end and text[start] in " \t":
            start += 1
    if node.style in ('"', "'"):
        return Span(start + 1, end - 1, text[start + 1 : end - 1], quoted=True)
    return Span(start, end, text[start:end])


# --- JSON ------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\r\n]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_ATOM = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")


class _JsonScanner:
    """Positions of values in JSON text that json.loads accepted."""

    def __init__(self, text: str) -> None:
        self.text = text

    def ws(self, i: int) -> int:
        return _WS.match(self.text, i).end()  # type: ignore[union-attr]

    def skip(self, i: int) -> int:
        """Index just after the value starting at ``i``."""
        c = self.text[i]
        if c == '"':
            return _STRING.match(self.text, i).end()  # type: ignore[union-attr]
        if c in "{[":
            close = "}" if c == "{" else "]"
            i = self.ws(i + 1)
            if self.text[i] == close:
                return i + 1
            while True:
                if c == "{":
                    i = self.ws(self.skip(i))  # key
                    i = self.ws(i + 1)  # colon
                i = self.ws(self.skip(i))
                if self.text[i] == ",":
                    i = self.ws(i + 1)
                    continue
                return i + 1
        return _ATOM.match(self.text, i).end()  # type: ignore[union-attr]

    def find(self, i: int, part: str | int) -> int:
        """Start of the child ``part`` of the container starting at ``i``."""
        c = self.text[i]
        i = self.ws(i + 1)
        found = -1
        index = 0
        while self.text[i] not in "}]":
            if c == "{":
                end = self.skip(i)
                name = json.loads(self.text[i:end])
                i = self.ws(self.ws(end) + 1)
                if name == part:
                    found = i  # the last duplicate wins, as in json.loads
            elif index == part:
                found = i
            i = self.ws(self.skip(i))
            index += 1
            if self.text[i] == ",":
                i = self.ws(i + 1)
        if found < 0:
            raise EditError(f"'{part}' not found")
        return found


def _json_span(text: str, key: str) -> Span:
    try:
        json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise EditError(f"not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    scanner = _JsonScanner(text)
    i = scanner.ws(1 if text.startswith("\ufeff") else 0)
    for part in split_key(key):
        if scanner.text[i] not in "{[" or (scanner.text[i] == "{") != isinstance(part, str):
            raise EditError(f"key {key!r} not found ('{part}' is not in an object/array)")
        try:
            i = scanner.find(i, part)
        except EditError as exc:
            raise EditError(f"key {key!r} not found ({exc})") from None
    end = scanner.skip(i)
    if text[i] in "{[":
        raise EditError(f"key {key!r} holds an object or array, not a single value")
    if text[i] == '"':
        return Span(i + 1, end - 1, text[i + 1 : end - 1], quoted=True)
    return Span(i, end, text[i:end])


# --- line formats: TOML, INI, .env -----------------------------------------------------

_LINE = re.compile(r"[^\n]*\n?")


def _lines(text: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    for m in _LINE.finditer(text):
        if not m.group():
            break
        out.append((pos, m.group()))
        pos = m.end()
    return out


_ASSIGN = re.compile(
    r"""^(?P<indent>[ \t]*)(?:export[ \t]+)?(?P<key>[A-Za-z0-9_.\-"']+?)[ \t]*(?P<op>=|:)[ \t]*"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s#;]*)"""
)
_HEADER = re.compile(r"^[ \t]*\[\[?[ \t]*(?P<name>[^\]]+?)[ \t]*\]\]?[ \t]*(?:[#;].*)?$")


def _line_span(text: str, key: str, fmt: Format) -> Span:
    if fmt == "env":
        section, name = "", key
    else:
        section, _, name = key.rpartition(".")
    current = ""
    hits: list[Span] = []
    for offset, line in _lines(text):
        body = line.rstrip("\r\n")
        header = _HEADER.match(body)
        if header and fmt != "env":
            current = header.group("name").replace('"', "").replace("'", "")
            continue
        m = _ASSIGN.match(body)
        if not m or (fmt == "ini" and m.group("op") not in "=:") or (fmt != "ini" and m.group("op") != "="):
            continue
        k = m.group("key").strip("\"'")
        full_section = current
        if fmt == "toml" and "." in k:  # dotted keys inside a table
            prefix, _, k = k.rpartition(".")
            full_section = f"{current}.{prefix}" if current else prefix
        if k != name or full_section != section:
            continue
        v = m.group("value")
        start = offset + m.start("value")
        if v[:1] in "\"'" and len(v) >= 2:
            hits.append(Span(start + 1, start + len(v) - 1, v[1:-1], quoted=True))
        else:
            hits.append(Span(start, start + len(v), v))
    if not hits:
        raise EditError(f"key {key!r} not found")
    if len(hits) > 1 and fmt != "env":
        raise EditError(f"key {key!r} is set {len(hits)} times; suture will not guess which")
    return hits[-1]  # .env: the last assignment wins, as in shells


# --- regex -----------------------------------------------------------------------------


def _regex_span(text: str, pattern: str) -> Span:
    rx = re.compile(pattern, re.M)
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


def find_span(text: str, fmt: Format, *, key: str | None = None, regex: str | None = None) -> Span:
    """Where the value lives: by ``regex`` in any text, else by ``key`` in a structured file."""
    if regex is not None:
        return _regex_span(text, regex)
    assert key is not None
    if fmt == "yaml":
        return _yaml_span(text, key)
    if fmt == "json":
        return _json_span(text, key)
    if fmt in ("toml", "ini", "env"):
        return _line_span(text, key, fmt)
    raise EditError("a key works only on YAML, JSON, TOML, INI and .env files; use regex for other text")


# --- checking the result ---------------------------------------------------------------


def parse_structured(text: str, fmt: Format) -> Any:
    """The data a structured file holds (used to prove an edit changed one value only)."""
    body = text.lstrip("\ufeff")
    if fmt == "yaml":
        return yaml.safe_load(body)
    if fmt == "json":
        return json.loads(body)
    if fmt == "toml":
        return tomllib.loads(body)
    if fmt == "ini":
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.read_string(body)
        return {s: dict(parser.items(s)) for s in parser.sections()}
    if fmt == "env":
        out = {}
        for _, line in _lines(body):
            m = _ASSIGN.match(line.rstrip("\r\n"))
            if m and m.group("op") == "=":
                v = m.group("value")
                out[m.group("key")] = v[1:-1] if v[:1] in "\"'" and len(v) >= 2 else v
        return out
    return text


def _assign(data: Any, parts: list[str | int], value: Any, fmt: Format) -> None:
    if fmt == "ini":
        parts = [".".join(str(p) for p in parts[:-1]), str(parts[-1]).lower()]
    if fmt == "env":
        parts = [".".join(str(p) for p in parts)]
    for part in parts[:-1]:
        data = data[part]
    data[parts[-1]] = value


def check_only_value_changed(before: str, after: str, fmt: Format, key: str) -> None:
    """Raise EditError unless ``after`` equals ``before`` with ``key`` set to its new value."""
    if fmt == "text":
        return
    try:
        old, new = parse_structured(before, fmt), parse_structured(after, fmt)
    except Exception as exc:  # any parser's error means we broke the file
        raise EditError(f"the edited file would not parse: {exc}") from exc
    parts = split_key(key)
    probe = new
    try:
        if fmt == "ini":
            probe = new[".".join(str(p) for p in parts[:-1])][str(parts[-1]).lower()]
        elif fmt == "env":
            probe = new[".".join(str(p) for p in parts)]
        else:
            for part in parts:
                probe = probe[part]
        _assign(old, parts, probe, fmt)
    except (KeyError, IndexError, TypeError) as exc:
        raise EditError(f"after the edit, key {key!r} is missing") from exc
    if old != new:
        raise EditError("the edit would change more than the value; refused")


# --- numbers ---------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def parse_number(text: str) -> float:
    t = text.strip().replace("_", "")
    if not _NUMBER.match(t):
        raise EditError(f"{text!r} is not a number")
    return float(t)


def format_number(value: float, like: str) -> str:
    """Write ``value`` the way ``like`` was written (integer stays integer when it can)."""
    if math.isnan(value) or math.isinf(value):
        raise EditError(f"refusing to write {value}")
    looks_int = re.fullmatch(r"[+-]?\d+", like.strip().replace("_", "")) is not None
    if value == int(value) and (looks_int or abs(value) >= 1e15):
        return str(int(value))
    text = f"{value:.12g}"
    if "e" in text or "E" in text:
        text = repr(value)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def adjust_value(
    old: float,
    op: Literal["multiply", "add", "set"],
    amount: float,
    minimum: float | None,
    maximum: float | None,
    round_to: int | None,
) -> float:
    """The new value, clamped to its bounds; AtBound if the change is impossible."""
    if op == "multiply":
        new = old * amount
    elif op == "add":
        new = old + amount
    else:
        new = amount
    if round_to is not None:
        new = round(new, round_to)
    if maximum is not None and new > maximum:
        new = maximum
    if minimum is not None and new < minimum:
        new = minimum
    if new == old:
        bound = "max" if maximum is not None and old >= maximum else "min" if minimum is not None and old <= minimum else None
        if bound:
            raise AtBound(f"the value is already at its {bound} ({old:g}); no fix is possible")
    return new


@dataclass(frozen=True, slots=True)
class TextEdit:
    """The result of an edit: the new text and what changed."""

    text: str
    old: str
    new: str
    line: int

    @property
    def changed(self) -> bool:
        return self.old != self.new


def edit_value(
    text: str,
    fmt: Format,
    *,
    key: str | None,
    regex: str | None,
    compute: Callable[[Span], str],
) -> TextEdit:
    """Find the value, let ``compute`` produce its new characters, splice, and check."""
    span = find_span(text, fmt, key=key, regex=regex)
    new_value = compute(span)
    if span.quoted and any(c in new_value for c in "\"'\\\n"):
        raise EditError("the new value would need escaping inside quotes; refused")
    after = splice(text, span, new_value)
    if key is not None and regex is None:
        check_only_value_changed(text, after, fmt, key)
    return TextEdit(text=after, old=span.text, new=new_value, line=text.count("\n", 0, span.start) + 1)


def replace_text(text: str, pattern: str, literal: str) -> TextEdit:
    """Replace the one match of ``pattern`` with ``literal`` (no backreferences)."""
    rx = re.compile(pattern, re.M)
    matches = list(rx.finditer(text))
    if not matches:
        raise EditError(f"/{pattern}/ matches nothing")
    if len(matches) > 1:
        raise EditError(f"/{pattern}/ matches {len(matches)} places; make it match one")
    m = matches[0]
    after = text[: m.start()] + literal + text[m.end() :]
    return TextEdit(text=after, old=m.group(0), new=literal, line=text.count("\n", 0, m.start()) + 1)
