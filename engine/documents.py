"""Check a YAML document against a JSON Schema, and say every problem in the words of the person who wrote it.

The first two steps of every load (playbooks and suture.yaml alike)::

    text --read_document--> Document(data, positions) --schema_problems--> [Problem]

Reading YAML with positions is ``engine.yaml_document``; this module finds the
schemas (``schemas/`` is the single source of truth, itself checked as a valid
schema), runs jsonschema's ``iter_errors`` (every issue, not the first) and turns
each error into a :class:`~.errors.Problem` at the file, line, column and YAML
path it concerns.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from .errors import DocumentError, Problem
from .yaml_document import Document, PathKey, describe_type, read_file, short


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


def _expected(types: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
             "number": "a number", "boolean": "a boolean", "null": "null"}
    if isinstance(types, str):
        types = [types]
    words = [names.get(t, t) for t in types]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


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
        return f"{short(value)} is not one of: {', '.join(str(c) for c in limit)}{hint}"
    if kind == "pattern":
        if limit == _DURATION.pattern:
            return f"{short(value)} is not a duration (write 500ms, 30s, 2m, 1h or 1d)"
        words = _PATTERN_WORDS.get(limit)
        return f"{_field(path)} {words}; got {short(value)}" if words else f"{short(value)} does not match {limit}"
    if kind in _COMPARISONS:
        return f"must be {_COMPARISONS[kind]} {limit}, got {short(value)}"
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
    got = f"{describe_type(value)} {short(value)}"
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
