"""The proof an edit did what it meant: the whole new document, read by the real parser.

The expected document is the old one, parsed by the format's own parser and
copied so nothing is shared (a YAML alias is its own copy), with exactly the
intended typed value at the key. The edit is accepted only if the new text
parses to a document :func:`same` as that: type-strict (``True`` is not ``1``,
``1`` is not ``1.0``), order-strict (mapping keys in order) and NaN equal to
NaN. :func:`explain` says in words what differs.

Real parsers: PyYAML ``safe_load``, ``json``, ``tomllib``,
``configparser.RawConfigParser(strict=False, interpolation=None)`` and
``python-dotenv``.
"""

from __future__ import annotations

import configparser
import io
import json
import math
import tomllib
from typing import Any

import yaml
from dotenv import dotenv_values

from .errors import EditError
from .spans import BOM, Format, Path, Span, render_path

# An expanded document bigger than this (YAML aliases can multiply one) is not edited.
MAX_NODES = 1_000_000


def _ini(body: str) -> dict[str, dict[str, Any]]:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.read_string(body)
    # a section reads its DEFAULT values too: changing one changes every section that has no own
    return {"DEFAULT": dict(parser.defaults()), **{s: dict(parser.items(s)) for s in parser.sections()}}


def parse_document(text: str, fmt: Format) -> Any:
    """The data a structured file holds, as the format's real parser reads it."""
    body = text.removeprefix(BOM)
    try:
        if fmt == "yaml":
            return yaml.safe_load(body)
        if fmt == "json":
            return json.loads(body)
        if fmt == "toml":
            return tomllib.loads(body)
        if fmt == "ini":
            return _ini(body)
        if fmt == "env":
            # interpolated, as the app reading it will: a change of A that moves B="${A}" changes two values
            return dict(dotenv_values(stream=io.StringIO(body)))
    except RecursionError:
        raise EditError(f"not editable: the {fmt} nesting is too deep") from None
    # The parsers meet any text here; PyYAML alone raises ValueError for a bad date and
    # AttributeError for a bad !!timestamp, so every error means "this does not parse".
    except Exception as exc:
        raise EditError(f"not valid {fmt}: {exc}") from exc
    raise EditError(f"{fmt} has no document parser")


def value_at(doc: Any, path: Path) -> Any:
    for part in path:
        in_dict = isinstance(doc, dict) and part in doc
        in_list = isinstance(doc, list) and isinstance(part, int) and 0 <= part < len(doc)
        if not (in_dict or in_list):
            raise EditError(f"{render_path(path)} is not in the document")
        doc = doc[part]
    return doc


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_NODES

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise EditError(f"not editable: the document holds more than {MAX_NODES} values (aliases expanded)")


def _copy(value: Any, budget: _Budget) -> Any:
    """A plain recursive copy: unlike deepcopy's memo, two aliases of one object become two objects."""
    budget.spend()
    if isinstance(value, dict):
        return {k: _copy(v, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, budget) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v, budget) for v in value)
    if isinstance(value, set):
        return set(value)
    return value


def expected_document(old: Any, path: Path, value: Any) -> Any:
    """``old`` with exactly ``value`` at ``path`` and nothing else changed."""
    doc = _copy(old, _Budget())
    if not path:
        return value
    parent = value_at(doc, path[:-1])
    value_at(parent, path[-1:])  # the key exists
    parent[path[-1]] = value
    return doc


def same(a: Any, b: Any) -> bool:
    """Equal, type for type and key order for key order; NaN is the same as NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        return all(same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True))
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return False
        return all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def differences(a: Any, b: Any, path: Path = (), limit: int = 5) -> list[Path]:
    """Where ``a`` and ``b`` differ (at most ``limit`` places)."""
    if same(a, b):
        return []
    if type(a) is type(b) and isinstance(a, dict) and [*a] == [*b] and all(same(x, y) for x, y in zip(a, b, strict=True)):
        found: list[Path] = []
        for k in a:
            found += differences(a[k], b[k], (*path, k), limit - len(found))
            if len(found) >= limit:
                break
        return found
    if type(a) is type(b) and isinstance(a, list) and len(a) == len(b):
        found = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found += differences(x, y, (*path, i), limit - len(found))
            if len(found) >= limit:
                break
        return found
    return [path]


def explain(span: Span, intended: Any, expected: Any, actual: Any) -> str:
    """Why the new document is not the expected one, in words."""
    others = [p for p in differences(expected, actual) if p != span.path]
    if not others:
        try:
            got = value_at(actual, span.path)
        except EditError:
            return f"after the edit, {render_path(span.path)} would be missing"
        return f"the new text would read back as {got!r}, not {intended!r}"
    where = ", ".join(render_path(p) for p in others)
    if span.anchor:
        return (f"the value is anchored (&{span.anchor}) and also used at {where}: "
                f"changing it would change {len(others) + 1} places")
    return f"the edit would also change {where}"
