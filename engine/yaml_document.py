"""Read YAML with positions: the first step of every load (playbooks and suture.yaml alike).

    text --read_document--> Document(data, positions)

PyYAML's composer gives every node a start mark; we keep the mark of each
value and of each mapping key under its path (a tuple of keys and indexes), so
any later step can say ``file:line:column`` for ``when.all[0].log.pattern``.
Duplicate keys, non-string keys and alias bombs are reported here, because
PyYAML itself silently keeps the last duplicate. PyYAML's syntax errors are
said in the words of someone editing the file. The next step, the schema check,
is ``engine.documents``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    return str(node.value) if isinstance(node, yaml.ScalarNode) else short(key)


def _key_message(node: yaml.Node, key: Any) -> str:
    written = _written(node, key)
    if isinstance(node, yaml.ScalarNode):
        return f"the key {written} is read as {describe_type(key)}, but keys must be strings; quote it: '{written}'"
    return f"keys must be strings, got {describe_type(key)} {written}"


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


def _runaway_quote(text: str, line: int) -> yaml.Mark | None:
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
                start: yaml.Mark = token.start_mark
                return start
    except yaml.YAMLError:
        pass
    return None


_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def describe_type(value: Any) -> str:
    """What a value is, in words: ``a mapping``, ``an integer``, ``null``."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def short(value: Any) -> str:
    """A value's repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
