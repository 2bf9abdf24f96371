"""Read YAML with positions and check it against a JSON Schema.

The first two steps of every load (playbooks and suture.yaml alike):

    text --read_document--> Document(data, positions) --schema_problems--> [Problem]

PyYAML's composer gives every node a start mark; we keep the mark of each
value and of each mapping key under its path (a tuple of keys and indexes), so
any later step can say ``file:line:column`` for ``when.all[0].log.pattern``.
Duplicate keys, non-string keys and alias bombs are reported here, because
PyYAML itself silently keeps the last duplicate.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import DocumentError, Problem

PathKey = tuple[str | int, ...]

MAX_DOCUMENT_BYTES = 1 << 20
MAX_NODES = 100_000


def render_path(path: Iterable[str | int]) -> str:
    """``("when", "all", 0, "log")`` -> ``when.all[0].log``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(slots=True)
class Document:
    """A parsed YAML document that remembers where each value came from."""

    file: str
    data: Any
    values: dict[PathKey, Position] = field(default_factory=dict)
    keys: dict[PathKey, Position] = field(default_factory=dict)

    def mark(self, path: PathKey, *, key: bool = False) -> Position:
        """The mark of ``path`` (its key if ``key``), else of its nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Position(1, 1))

    def anchor(self, path: PathKey) -> Position:
        """Where to show ``path``: a mapping or list is shown at its key (``log:``), not at its first item."""
        return self.mark(path, key=bool(path) and isinstance(path[-1], str) and self._holds_container(path))

    def _holds_container(self, path: PathKey) -> bool:
        value = self.data
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return False
        return isinstance(value, (dict, list))

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> Problem:
        m = self.mark(path, key=True) if key else self.anchor(path)
        return Problem(
            file=self.file, line=m.line, column=m.column, path=render_path(path), message=message
        )


class _Reader:
    def __init__(self, doc: Document, loader: yaml.SafeLoader) -> None:
        self.doc = doc
        self.loader = loader
        self.problems: list[Problem] = []
        self.nodes = 0

    def _mark(self, node: yaml.Node) -> Position:
        return Position(node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        self.doc.values[path] = self._mark(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self.problems.append(
                        Problem(
                            file=self.doc.file,
                            line=key_node.start_mark.line + 1,
                            column=key_node.start_mark.column + 1,
                            path=render_path((*path, _written(key_node, key))),
                            message=_key_message(key_node, key),
                        )
                    )
                    key = str(key)
                child = (*path, key)
                if key in out:
                    first = self.doc.keys[child]
                    self.problems.append(
                        Problem(
                            file=self.doc.file,
                            line=key_node.start_mark.line + 1,
                            column=key_node.start_mark.column + 1,
                            path=render_path(child),
                            message=f"duplicate key '{key}' (first defined on line {first.line})",
                        )
                    )
                    continue
                self.doc.keys[child] = self._mark(key_node)
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, float) and not math.isfinite(value):
            # .nan and .inf slip through minimum/maximum in the schema (NaN compares false).
            mark = self._mark(node)
            self.problems.append(
                Problem(
                    file=self.doc.file,
                    line=mark.line,
                    column=mark.column,
                    path=render_path(path),
                    message=f"{node.value} is not a finite number",
                )
            )
        return value


def _written(node: yaml.Node, key: Any) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else _short(key)


def _key_message(node: yaml.Node, key: Any) -> str:
    written = _written(node, key)
    if isinstance(node, yaml.ScalarNode):
        return f"the key {written} is read as {_describe(key)}, but keys must be strings; quote it: '{written}'"
    return f"keys must be strings, got {_describe(key)} {written}"


class _TooLarge(Exception):
    pass


def read_document(text: str | bytes, file: str) -> Document:
    """Parse one YAML document; raise DocumentError with every problem found."""
    if isinstance(text, bytes):
        if len(text) > MAX_DOCUMENT_BYTES:
            raise DocumentError([_whole(file, f"larger than {MAX_DOCUMENT_BYTES} bytes")])
        raw = text
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DocumentError([_not_utf8(file, raw, exc)]) from exc
    if len(text) > MAX_DOCUMENT_BYTES:
        raise DocumentError([_whole(file, f"larger than {MAX_DOCUMENT_BYTES} bytes")])
    doc = Document(file=file, data=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise DocumentError([_whole(file, "the document is empty")])
        reader = _Reader(doc, loader)
        doc.data = reader.build(node, ())
    except yaml.MarkedYAMLError as exc:
        raise DocumentError([_syntax_problem(file, exc, text)]) from exc
    except yaml.YAMLError as exc:
        raise DocumentError([_whole(file, f"invalid YAML: {exc}")]) from exc
    except _TooLarge:
        raise DocumentError(
            [_whole(file, f"more than {MAX_NODES} values once its aliases (*name) are expanded; is it an alias bomb?")]
        ) from None
    except RecursionError:
        raise DocumentError([_whole(file, "nesting too deep")]) from None
    finally:
        loader.dispose()
    if reader.problems:
        raise DocumentError(reader.problems)
    return doc


def read_file(path: Path, display: str | None = None) -> Document:
    name = display or str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DocumentError([_whole(name, f"cannot read: {exc.strerror}")]) from exc
    return read_document(raw, name)


def _whole(file: str, message: str) -> Problem:
    return Problem(file=file, line=0, column=0, path="", message=message)


def _not_utf8(file: str, raw: bytes, exc: UnicodeDecodeError) -> Problem:
    start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the BOM
    line = raw.count(b"\n", 0, start) + 1
    column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
    byte = raw[start : start + 1].hex()
    return Problem(
        file=file,
        line=line,
        column=column,
        path="",
        message=f"not UTF-8: byte 0x{byte} cannot be decoded; save the file as UTF-8",
    )


def _syntax_problem(file: str, exc: yaml.MarkedYAMLError, text: str) -> Problem:
    """PyYAML's parser vocabulary (block end, simple key, stream) in the words of someone editing a file."""
    problem, context = exc.problem or "", exc.context or ""
    mark, start = exc.problem_mark or exc.context_mark, exc.context_mark
    started = f" (it starts on line {start.line + 1})" if start else ""
    runaway = _runaway_quote(text, mark.line) if mark else None
    if runaway and mark:
        # The quote was closed by the next quote in the file, lines later; the parser trips there.
        quote = runaway.buffer[runaway.pointer] if runaway.buffer else "'"
        message = f"the string opened with {quote} here runs on to line {mark.line + 1}: is its closing {quote} missing?"
        mark = runaway
    elif "'\\t'" in problem or "tab" in problem:
        message = "a tab cannot indent or separate YAML; use spaces"
    elif context == "while scanning a quoted scalar" and start:
        quote = start.buffer[start.pointer] if start.buffer else "'"
        message, mark = f"the string opened with {quote} here is never closed", start
    elif context == "while scanning a simple key" and start:
        message, mark = "expected 'key: value', but this line has no ':' after its key", start
    elif problem.startswith("expected <block end>"):
        where = f" that starts on line {start.line + 1}, column {start.column + 1}" if start else " above"
        message = f"bad indentation: this line is not lined up with the block{where}"
    elif problem == "mapping values are not allowed here":
        message = "a ':' is not allowed here; check the indentation, or quote a value that contains ': '"
    elif context == "expected a single document in the stream":
        message = "the file must hold one YAML document; this '---' starts a second one"
    elif context.startswith("while parsing a flow") and start:
        what = "[...] list" if "sequence" in context else "{...} mapping"
        message = f"{problem}: is the {what} that opens on line {start.line + 1} missing a ',' or its closing bracket?"
    else:
        message = problem or context or "not valid YAML"
        if context.startswith("while ") and start:
            message += f" ({context}{started})"
    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    return Problem(file=file, line=line, column=column, path="", message=f"invalid YAML: {message}")


def _runaway_quote(text: str, line: int) -> yaml.Position | None:
    """Where a quoted string that spans lines and ends on ``line`` (0-based) starts, if there is one."""
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if token.start_mark.line > line:
                break
            if (
                isinstance(token, yaml.ScalarToken)
                and token.style in ("'", '"')
                and token.start_mark.line < token.end_mark.line == line
            ):
                start: yaml.Position = token.start_mark
                return start
    except yaml.YAMLError:
        pass
    return None


# --- schema --------------------------------------------------------------------------


def schema_dir() -> Path:
    """Where schemas/*.json live: the checkout's schemas/ or the installed package data."""
    import importlib.util

    spec = importlib.util.find_spec("suture.schemas")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location, "playbook.schema.json").is_file():
                return Path(location)
    here = Path(__file__).resolve().parent.parent / "schemas"
    if here.is_dir():
        return here
    raise FileNotFoundError("suture's schemas/ folder is missing from the installation")


@cache
def load_schema(name: str) -> Mapping[str, Any]:
    schema: Mapping[str, Any] = json.loads((schema_dir() / f"{name}.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def _describe(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _expected(types: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
             "number": "a number", "boolean": "a boolean", "null": "null"}
    if isinstance(types, str):
        types = [types]
    words = [names.get(t, t) for t in types]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def schema_problems(doc: Document, schema_name: str) -> list[Problem]:
    """Every schema violation of ``doc``, each with a human message and a position."""
    schema = load_schema(schema_name)
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[Problem] = []
    seen: set[tuple[int, int, str, str]] = set()
    for error in sorted(validator.iter_errors(doc.data), key=lambda e: list(map(str, e.absolute_path))):
        for problem in _explain(doc, error):
            ident = (problem.line, problem.column, problem.path, problem.message)
            if ident not in seen:
                seen.add(ident)
                problems.append(problem)
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


_DURATION = re.compile(r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$")

# What each pattern of the schemas allows, said in words (the schemas stay the single source of truth;
# a pattern missing here falls back to showing the regex).
_PATTERN_WORDS = {
    "^[a-z0-9][a-z0-9-]*$": "may contain only lowercase letters, digits and '-', and must start with a letter or digit"
    " (e.g. rate-limit-backoff)",
    "^[A-Za-z0-9_][A-Za-z0-9_.-]*$": "may contain only letters, digits, '_', '.' and '-', and must not start with"
    " '.' or '-'",
    "^[A-Za-z0-9_.-]+$": "may contain only letters, digits, '_', '.' and '-'",
    "^[A-Za-z_][A-Za-z0-9_]*$": "may contain only letters, digits and '_', and must not start with a digit",
    "^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$": "may contain only letters, digits and '_', '.', ':', '/', '-'",
    "^https?://": "must be an http:// or https:// URL",
    "^postgres(ql)?://": "must be a postgresql:// URL",
    "^rediss?://": "must be a redis:// or rediss:// URL",
    "^[^:]+:[0-9]{1,5}$": "must be host:port",
    "^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$": "must be host:port (an IPv6 host in brackets)",
    "^https?://[^/*]+$": "must be an origin such as https://example.com (no path, no '*')",
    "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$": "must be a container name: letters, digits, '_', '.' and '-', starting with a"
    " letter or digit",
    "^/[^\\u0000]*[^/]$": "must be the absolute path of a program, such as /usr/bin/systemctl",
    "^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?$": "must be a host name or address, optionally with"
    " :port (an IPv6 address in brackets)",
}
_YAML_BOOLEAN_HINT = " (YAML reads unquoted yes/no/on/off/true/false as booleans; quote it)"


def _field(path: PathKey) -> str:
    """The name of the thing at ``path``, for messages: ``id``, ``group_by`` for ``group_by[0]``."""
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return "value"


def _explain(doc: Document, error: jsonschema.ValidationError) -> list[Problem]:
    path: PathKey = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    kind = error.validator
    value = error.instance
    if "propertyNames" in error.relative_schema_path and isinstance(value, str):
        # jsonschema reports a bad name at its parent mapping; point at the key itself.
        words = _PATTERN_WORDS.get(str(schema.get("pattern")), error.message)
        return [doc.problem((*path, value), f"the name '{value}' is not allowed: it {words}", key=True)]
    if kind == "additionalProperties" and isinstance(value, dict):
        known = list(schema.get("properties", {}))
        out = []
        for key in (k for k in value if k not in known):
            hint = difflib.get_close_matches(key, known, n=1)
            suffix = f" (did you mean '{hint[0]}'?)" if hint else f"; expected one of: {', '.join(known)}"
            out.append(doc.problem((*path, key), f"unknown key '{key}'{suffix}", key=True))
        return out
    if kind == "required":
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = [k for k in required if isinstance(value, dict) and k not in value]
        return [doc.problem(path, f"missing required key '{k}'") for k in missing]
    if kind in ("minProperties", "maxProperties") and schema.get("maxProperties") == 1:
        return _exactly_one(doc, path, schema, value)
    if kind == "type":
        return [_wrong_type(doc, path, schema, error.validator_value, value)]
    message = _wrong_value(path, str(kind), error.validator_value, value)
    return [doc.problem(path, message or error.message)]


def _wrong_value(path: PathKey, kind: str, limit: Any, value: Any) -> str | None:
    """The message for a value of the right type that breaks a limit, or None to use jsonschema's."""
    if kind == "enum":
        hint = _YAML_BOOLEAN_HINT if isinstance(value, bool) else ""
        return f"{_short(value)} is not one of: {', '.join(str(c) for c in limit)}{hint}"
    if kind == "pattern":
        if limit == _DURATION.pattern:
            return f"{_short(value)} is not a duration (write 500ms, 30s, 2m, 1h or 1d)"
        words = _PATTERN_WORDS.get(limit)
        return f"{_field(path)} {words}; got {_short(value)}" if words else f"{_short(value)} does not match {limit}"
    if kind in _COMPARISONS:
        return f"must be {_COMPARISONS[kind]} {limit}, got {_short(value)}"
    if kind == "minItems" and not value:
        return f"{_field(path)} must not be empty (it needs at least {limit} item{'s' * (limit != 1)})"
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        return f"takes {word} {limit} items, got {len(value)}"
    if kind == "minLength" and value == "":
        return f"{_field(path)} must not be an empty string"
    if kind in ("minLength", "maxLength"):
        word = "at least" if kind == "minLength" else "at most"
        return f"must be {word} {limit} characters long"
    if kind == "minProperties":
        return f"{_field(path)} must not be empty"
    if kind == "uniqueItems":
        return "items must be unique"
    return None


_COMPARISONS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _exactly_one(doc: Document, path: PathKey, schema: Mapping[str, Any], value: Any) -> list[Problem]:
    """A condition or action must be one mapping with one kind: ``- log: {...}``."""
    choices = list(schema.get("properties", {}))
    given = list(value) if isinstance(value, dict) else []
    known = [k for k in given if k in choices]
    if len(known) <= 1 and len(given) > len(known):
        return []  # an unknown key: its own problem says so, with a did-you-mean
    got = "nothing" if not given else f"{len(known)}: {', '.join(known)}"
    hint = ""
    if len(known) > 1 and path and isinstance(path[-1], int):
        hint = "; give each its own '- ' list item"
    elif len(known) > 1 and path == ("when",):
        hint = "; to need them all, list them under all: (or any:)"
    return [doc.problem(path, f"expected exactly one of {', '.join(choices)}; got {got}{hint}")]


def _wrong_type(doc: Document, path: PathKey, schema: Mapping[str, Any], expected: Any, value: Any) -> Problem:
    got = f"{_describe(value)} {_short(value)}"
    last = path[-1] if path else None
    if schema.get("pattern") == _DURATION.pattern and isinstance(value, (int, float)) and not isinstance(value, bool):
        return doc.problem(path, f"{value!r} is not a duration: give it a unit, e.g. {value}s (or 500ms, 2m, 1h)")
    if last == "not" and expected == "object":
        return doc.problem(path, f"'not' expects one condition (a mapping), got {got}; to negate several, write"
                                 " not: {any: [...]}")
    if last == "argv" and expected == "array":
        return doc.problem(path, f"argv must be a list of words such as [systemctl, restart, app] (no shell runs"
                                 f" it), got {got}")
    if not path and expected == "object":
        return doc.problem(path, f"the document must be a mapping of keys, got {got}")
    hint = _YAML_BOOLEAN_HINT if isinstance(value, bool) and "string" in str(expected) else ""
    return doc.problem(path, f"expected {_expected(expected)}, got {got}{hint}")


def load_checked(path: Path, schema_name: str, display: str | None = None) -> Document:
    """read_file + schema_problems, raising DocumentError with every problem."""
    doc = read_file(path, display)
    problems = schema_problems(doc, schema_name)
    if problems:
        raise DocumentError(problems)
    return doc
