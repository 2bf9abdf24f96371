"""Edits on random documents, checked against each format's real parser.

Every document is built as a Python value first (the ground truth), then
rendered with comments, quoting styles, anchors and aliases, flow style,
multi-line strings, CRLF and a BOM. Every edit is a ``set`` or an ``adjust``
at a random existing key, made through the action code the sidecar runs. An
accepted edit must give exactly the ground truth with the intended typed value
at the key, and change only the value's characters; a refused one must be an
EditError (AtBound at a bound), never another exception. An *ordinary* edit (a
single-line value no alias shares, a value the format can hold) must be
accepted, so refusing everything cannot pass.
"""

from __future__ import annotations

import configparser
import io
import json
import math
import re
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from suture.engine.actions import _edit
from suture.engine.edits import adjust_value, find_span, format_number
from suture.engine.errors import AtBound, EditError
from suture.engine.playbook import Adjust, SetValue, Where

AT = Where(file="playbook.yaml", line=1, path="fix[0]")
FILES = {"yaml": "c.yaml", "json": "c.json", "toml": "c.toml", "ini": "c.ini", "env": ".env"}
EXAMPLES = 300
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Leaf:
    path: tuple[Any, ...]
    key: str
    ordinary: bool  # an edit the format can hold here must be accepted


@dataclass(frozen=True)
class Doc:
    text: str
    truth: Any
    leaves: tuple[Leaf, ...]


# --- the oracle: real parsers, strict equality, the intended value ---------------------


def parse(fmt: str, text: str) -> Any:
    body = text.removeprefix("\ufeff")
    if fmt == "yaml":
        return yaml.safe_load(body)
    if fmt == "json":
        return json.loads(body)
    if fmt == "toml":
        return tomllib.loads(body)
    if fmt == "ini":
        p = configparser.RawConfigParser(strict=False, interpolation=None)
        p.read_string(body)
        return {"DEFAULT": dict(p.defaults()), **{s: dict(p.items(s)) for s in p.sections()}}
    return dict(dotenv_values(stream=io.StringIO(body)))


def same(a: Any, b: Any) -> bool:
    """Type for type, key order for key order, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) and same(k, kb) for k, kb in zip(a, b, strict=True))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy(v) for v in value]
    return value


def at(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def with_value(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy(doc)
    at(out, path[:-1])[path[-1]] = value
    return out


def key_of(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" if i else p for i, p in enumerate(path))


def yfloat(x: float) -> str:
    """A float as YAML 1.1 reads it (``1.0e-05``)."""
    mantissa, e, exponent = repr(x).partition("e")
    return (mantissa if "." in mantissa else mantissa + ".0") + e + exponent


def as_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return yfloat(v) if isinstance(v, float) else str(v)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DOTENV_VARIABLE = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")


def intended(fmt: str, action: SetValue | Adjust, old: Any) -> tuple[str, Any]:
    """("value", v) for the value the edit must leave, ("bound", None) or ("refuse", None)."""
    if isinstance(action, SetValue):
        return "value", as_text(action.value) if fmt in ("ini", "env") else action.value
    if isinstance(old, str) and _NUMBER.fullmatch(old.strip().replace("_", "")):
        number = float(old.strip().replace("_", ""))
    elif isinstance(old, (int, float)) and not isinstance(old, bool):
        number = float(old)
    else:
        return "refuse", None
    try:
        new = adjust_value(number, action.op, action.amount, action.minimum, action.maximum, action.round_to)
    except AtBound:
        return "bound", None
    if not math.isfinite(new):
        return "refuse", None
    if isinstance(old, str):
        return "value", format_number(new, old)
    if isinstance(old, int) and new == int(new):
        return "value", int(new)
    return "value", float(format_number(new, "0.0"))


def holdable(fmt: str, value: Any) -> bool:
    """The format can hold this value where a plain one was (INI strips blanks; dotenv expands ${X})."""
    if fmt == "ini":
        return value == value.strip() and "\n" not in value and "\r" not in value
    if fmt == "env":
        return _DOTENV_VARIABLE.search(value) is None
    return True


SET_VALUES = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["off", "yes", "null", "~", "foo # bar", "", " x ", "a: b", "- x", "${HOME}", "1e3",
                     "0x10", "it's", 'say "hi"', "[b]", "#x", "two words", "5", "0.5", "a\\b", "{x}"]),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
BOUND = st.none() | st.floats(-1000, 1000)


@st.composite
def actions(draw: Any, fmt: str, key: str) -> SetValue | Adjust:
    if draw(st.booleans()):
        return SetValue(file=FILES[fmt], key=key, value=draw(SET_VALUES), at=AT)
    op = draw(st.sampled_from(["multiply", "add"]))
    amounts = st.sampled_from([0.25, 0.5, 1.5, 2.0, 3.0]) | st.floats(0.001, 1000) if op == "multiply" \
        else st.integers(-10, 10).map(float) | st.floats(-100, 100)
    return Adjust(file=FILES[fmt], key=key, op=op, amount=draw(amounts), minimum=draw(BOUND), maximum=draw(BOUND),
                  round_to=draw(st.none() | st.integers(0, 3)), at=AT)


def check_edit(fmt: str, doc: Doc, data: Any) -> None:
    """The property: exactly the intended document, or a refusal that is an EditError."""
    assert same(parse(fmt, doc.text), doc.truth), "the generator rendered a document that is not its ground truth"
    leaf = data.draw(st.sampled_from(doc.leaves))
    action = data.draw(actions(fmt, leaf.key))
    old = at(doc.truth, leaf.path)
    kind, want = intended(fmt, action, old)
    try:
        edit = _edit(action, doc.text)
    except (EditError, AtBound) as exc:
        event(f"refused ({'ordinary' if leaf.ordinary else 'tricky'} leaf, {kind})")
        assert "internal error" not in str(exc)
        assert not isinstance(exc, AtBound) or kind == "bound"
        assert not (leaf.ordinary and kind == "value" and holdable(fmt, want)), f"an ordinary edit was refused: {exc}"
        return
    event(f"accepted ({'ordinary' if leaf.ordinary else 'tricky'} leaf, {type(action).__name__})")
    assert kind == "value", f"accepted an edit that cannot be made ({kind})"
    assert doc.text[edit.at : edit.at + len(edit.old)] == edit.old
    assert edit.text == doc.text[: edit.at] + edit.new + doc.text[edit.at + len(edit.old) :]
    assert same(parse(fmt, edit.text), with_value(doc.truth, leaf.path, want))
    if same(want, old):
        assert (edit.text, edit.changed) == (doc.text, False), "a no-op must write nothing"


def finish(draw: Any, text: str, *, crlf: bool = True) -> str:
    if crlf and draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return ("\ufeff" if draw(st.booleans()) else "") + text


def leaves_of(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves_of(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves_of(v, (*path, i))]
    return [path]


# --- YAML: built from nodes so anchors and aliases share real objects ------------------

_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
_PRINTABLE = re.compile("[\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


def _resolves_to_str(s: str) -> bool:
    return bool(_RESOLVER.resolve(yaml.ScalarNode, s, (True, False)) == _STR)


def _plain_ok(s: str, flow: bool) -> bool:
    if not s or not _resolves_to_str(s):
        return False
    a = yaml.emitter.Emitter(io.StringIO()).analyze_scalar(s)
    return bool(a.allow_flow_plain if flow else a.allow_block_plain) and not a.multiline


def _double(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c != "\ufeff" and _PRINTABLE.fullmatch(c) and c not in "\x85\u2028\u2029":
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
    return '"' + "".join(out) + '"'


class YNode:
    """A value in the document; one YNode used twice is an anchor and its alias."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def truth(self) -> Any:
        if isinstance(self.value, dict):
            return {k: v.truth() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.truth() for v in self.value]
        return self.value


YAML_KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,4}", fullmatch=True).filter(_resolves_to_str)
BLOCK_TEXT = st.lists(st.from_regex(r"[a-z][a-z0-9 #:,\[\]{}-]{0,8}", fullmatch=True), min_size=1, max_size=3)
YAML_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**9), 10**9), st.floats(), st.text(max_size=8),
    st.sampled_from(["1.5", "5", "off", "a b", "x: y", "#c", "- z", "1e3"]),
    BLOCK_TEXT.map(lambda lines: "\n".join(lines) + "\n"),
    st.from_regex(r"[a-z]{1,4} [a-z]{1,4}", fullmatch=True),
)


class YamlRenderer:
    """Renders YNodes in random styles, recording which leaves an edit must be able to change."""

    def __init__(self, draw: Any, root: YNode) -> None:
        self.draw = draw
        self.uses: dict[int, int] = {}
        self.count(root)
        self.anchors: dict[int, str] = {}
        self.tricky: set[int] = set()  # leaves written over several lines or with a tag

    def count(self, node: YNode) -> None:
        self.uses[id(node)] = self.uses.get(id(node), 0) + 1
        if self.uses[id(node)] == 1 and isinstance(node.value, (dict, list)):
            for child in node.value.values() if isinstance(node.value, dict) else node.value:
                self.count(child)

    def props(self, node: YNode) -> str | None:
        """`` &a1`` on a first use (always when shared, sometimes anyway), None for an alias."""
        if id(node) in self.anchors:
            return None
        if self.uses[id(node)] > 1 or self.draw(st.integers(0, 7)) == 0:
            self.anchors[id(node)] = f"a{len(self.anchors)}"
            return f" &{self.anchors[id(node)]}"
        return ""

    def comment(self) -> str:
        return " # c" if self.draw(st.integers(0, 3)) == 0 else ""

    def scalar(self, value: Any, flow: bool) -> str:
        d = self.draw
        if value is None:
            return d(st.sampled_from(["null", "~", "Null"]))
        if isinstance(value, bool):
            return d(st.sampled_from(["true", "yes", "on", "True"] if value else ["false", "no", "off", "False"]))
        if isinstance(value, int):
            return d(st.sampled_from([str(value), f"0x{value:x}" if value >= 0 else str(value)]))
        if isinstance(value, float):
            if math.isnan(value):
                return ".nan"
            return (".inf" if value > 0 else "-.inf") if math.isinf(value) else yfloat(value)
        styles = ["double"]
        if _PRINTABLE.fullmatch(value) and not re.search("[\x85\u2028\u2029]", value):
            styles.append("single")
        if _plain_ok(value, flow):
            styles.append("plain")
        style = d(st.sampled_from(styles))
        if style == "single":
            return "'" + value.replace("'", "''") + "'"
        return value if style == "plain" else _double(value)

    def flow(self, node: YNode) -> str:
        props = self.props(node)
        if props is None:
            return f"*{self.anchors[id(node)]}"
        v = node.value
        if isinstance(v, dict):
            body = "{" + ", ".join(f"{k}: {self.flow(c)}" for k, c in v.items()) + "}"
        elif isinstance(v, list):
            body = "[" + ", ".join(self.flow(c) for c in v) + "]"
        else:
            body = self.scalar(v, flow=True)
        return f"{props.strip()} {body}" if props else body

    def after(self, node: YNode, indent: int) -> str:
        """What follows ``key:`` or ``-``, through the end of its lines."""
        props = self.props(node)
        if props is None:
            return f" *{self.anchors[id(node)]}{self.comment()}\n"
        v, pad = node.value, " " * (indent + 2)
        if isinstance(v, (dict, list)):
            if self.draw(st.booleans()):
                return f"{props} {self.flow_body(node)}{self.comment()}\n"
            return f"{props}{self.comment()}\n" + (self.block_map(v, indent + 2) if isinstance(v, dict)
                                                  else self.block_seq(v, indent + 2))
        return props + self.block_scalar(node, pad)

    def flow_body(self, node: YNode) -> str:
        v = node.value
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {self.flow(c)}" for k, c in v.items()) + "}"
        return "[" + ", ".join(self.flow(c) for c in v) + "]"

    def block_scalar(self, node: YNode, pad: str) -> str:
        v, d = node.value, self.draw
        if isinstance(v, str) and v.endswith("\n") and re.fullmatch(r"([a-z][^\n]*\n)+", v) and d(st.booleans()):
            self.tricky.add(id(node))
            return " |\n" + "".join(pad + line + "\n" for line in v[:-1].split("\n"))
        if isinstance(v, str) and re.fullmatch(r"[a-z]+ [a-z]+", v) and d(st.integers(0, 2)) == 0:
            self.tricky.add(id(node))
            first, second = v.split(" ")
            return f" {first}\n{pad}{second}{self.comment()}\n"
        if v is None and d(st.booleans()):
            return f"{self.comment()}\n"  # an empty value
        if isinstance(v, str) and _plain_ok(v, flow=False) and d(st.integers(0, 4)) == 0:
            self.tricky.add(id(node))
            return f" !!str {v}{self.comment()}\n"
        text = self.scalar(v, flow=False)
        if d(st.integers(0, 3)) == 0:  # the value on the next line
            return f"{self.comment()}\n{pad}{text}\n"
        return f" {text}{self.comment()}\n"

    def block_map(self, v: dict[str, YNode], indent: int) -> str:
        out = ""
        for k, child in v.items():
            if self.draw(st.integers(0, 5)) == 0:
                out += " " * indent + "# note: a: b\n"
            out += " " * indent + k + ":" + self.after(child, indent)
        return out

    def block_seq(self, v: list[YNode], indent: int) -> str:
        return "".join(" " * indent + "-" + self.after(child, indent) for child in v)


@st.composite
def yaml_documents(draw: Any) -> Doc:
    made: list[YNode] = []

    def node(depth: int) -> YNode:
        if made and draw(st.integers(0, 9)) == 0:
            return draw(st.sampled_from(made))  # the same node again: an alias
        kind = draw(st.sampled_from(["scalar", "scalar", "map", "seq"] if depth < 3 else ["scalar"]))
        if kind == "map":
            n = YNode({k: node(depth + 1) for k in draw(st.lists(YAML_KEYS, min_size=1, max_size=3, unique=True))})
        elif kind == "seq":
            n = YNode([node(depth + 1) for _ in range(draw(st.integers(1, 3)))])
        else:
            n = YNode(draw(YAML_SCALARS))
        made.append(n)
        return n

    root = YNode({k: node(1) for k in draw(st.lists(YAML_KEYS, min_size=1, max_size=4, unique=True))})
    r = YamlRenderer(draw, root)
    start = draw(st.sampled_from(["", "---\n", "%YAML 1.1\n---\n"]))
    if draw(st.integers(0, 4)) == 0:
        text = start + r.flow_body(root) + "\n"
    else:
        text = start + "# settings\n" + r.block_map(root.value, 0)
    return Doc(finish(draw, text), root.truth(), tuple(_yaml_leaves(root, r)))


def _yaml_leaves(root: YNode, r: YamlRenderer) -> list[Leaf]:
    out: list[Leaf] = []

    def walk(node: YNode, path: tuple[Any, ...], shared: bool) -> None:
        shared = shared or r.uses[id(node)] > 1
        items = node.value.items() if isinstance(node.value, dict) else enumerate(node.value) \
            if isinstance(node.value, list) else None
        if items is None:
            out.append(Leaf(path, key_of(path), not shared and id(node) not in r.tricky))
            return
        for k, child in items:
            walk(child, (*path, k), shared)

    walk(root, (), False)
    return out


@FAST
@given(doc=yaml_documents(), data=st.data())
def test_yaml_edits_give_exactly_the_intended_document(doc, data):
    """YAML: anchors, aliases, tags, flow style, block and multi-line strings, comments, CRLF, a BOM."""
    check_edit("yaml", doc, data)


# --- JSON ------------------------------------------------------------------------------

JSON_KEYS = st.text(st.characters(blacklist_characters=".[]", blacklist_categories=("Cs",)), min_size=1, max_size=5)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=6),
    lambda kids: st.lists(kids, min_size=1, max_size=3) | st.dictionaries(JSON_KEYS, kids, min_size=1, max_size=3),
    max_leaves=10,
)


@st.composite
def json_documents(draw: Any) -> Doc:
    truth = draw(st.dictionaries(JSON_KEYS, JSON_VALUES, min_size=1, max_size=4))
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    separators = draw(st.sampled_from([None, (",", ":"), (" , ", " : ")]))
    text = json.dumps(truth, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))
    leaves = tuple(Leaf(p, key_of(p), True) for p in leaves_of(truth))
    return Doc(finish(draw, text + draw(st.sampled_from(["", "\n"]))), truth, leaves)


@FAST
@given(doc=json_documents(), data=st.data())
def test_json_edits_give_exactly_the_intended_document(doc, data):
    """JSON: any layout, escapes, NaN and Infinity elsewhere, CRLF, a BOM."""
    check_edit("json", doc, data)


# --- TOML ------------------------------------------------------------------------------

TOML_KEYS = st.from_regex(r"[a-z][a-z0-9_-]{0,4}", fullmatch=True)
TOML_LINES = st.lists(st.sampled_from(["[b]", "x = 1", "# no comment", "[[t]]", "a, b", "'q'", ""]), min_size=1,
                      max_size=3)
TOML_SCALARS = st.one_of(
    st.booleans(), st.integers(-(2**40), 2**40), st.floats(), st.text(max_size=6),
    st.sampled_from(["1.5", "5", "it's"]), TOML_LINES.map("\n".join),
)


def _toml_table(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    values = [TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3)]
    if depth < 2:
        values += [st.deferred(lambda: _toml_table(depth + 1)),
                   st.lists(st.deferred(lambda: _toml_table(depth + 1)), min_size=1, max_size=2)]
    return st.dictionaries(TOML_KEYS, st.one_of(values), max_size=4)


class TomlRenderer:
    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.multiline: set[tuple[Any, ...]] = set()
        self.order: dict[tuple[Any, ...], list[str]] = {}  # tables come after a table's own keys

    def ordered(self, v: Any, path: tuple[Any, ...] = ()) -> Any:
        """The truth with keys in the order the text holds them."""
        if isinstance(v, dict):
            keys = self.order.get(path, list(v))
            return {k: self.ordered(v[k], (*path, k)) for k in keys}
        if isinstance(v, list):
            return [self.ordered(x, (*path, i)) for i, x in enumerate(v)]
        return v

    def key(self, k: str) -> str:
        return f'"{k}"' if self.draw(st.integers(0, 4)) == 0 else k

    def scalar(self, v: Any, path: tuple[Any, ...], inline: bool) -> str:
        d = self.draw
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return d(st.sampled_from([str(v), f"{v:_}"] + ([f"0x{v:x}"] if v >= 0 else [])))
        if isinstance(v, float):
            return ("nan" if math.isnan(v) else "inf" if v > 0 else "-inf") if not math.isfinite(v) else yfloat(v)
        if not inline and re.fullmatch(r"[a-z0-9 =\[\]#,\n]*", v) and "\n" in v and d(st.booleans()):
            self.multiline.add(path)
            quote = d(st.sampled_from(['"""', "'''"]))
            return f"{quote}\n{v}{quote}"
        if re.fullmatch(r"[^'\x00-\x08\x0a-\x1f\x7f]*", v) and d(st.booleans()):
            return f"'{v}'"
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")

    def value(self, v: Any, path: tuple[Any, ...], inline: bool = False) -> str:
        if isinstance(v, dict):
            return "{" + ", ".join(f"{self.key(k)} = {self.value(c, (*path, k), True)}" for k, c in v.items()) + "}"
        if isinstance(v, list):
            items = [self.value(c, (*path, i), inline) for i, c in enumerate(v)]
            if not inline and items and self.draw(st.booleans()):
                return "[\n" + "".join(f"  {item}, # c\n" for item in items) + "]"
            return "[" + ", ".join(items) + "]"
        return self.scalar(v, path, inline)

    def style(self, v: Any) -> str:
        if isinstance(v, dict):
            return str(self.draw(st.sampled_from(["inline", "header", "dotted"])))
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            return str(self.draw(st.sampled_from(["inline", "aot"])))
        return "inline"

    def table(self, t: dict[str, Any], path: tuple[Any, ...]) -> str:
        body, later = "", []
        for k, v in t.items():
            here = (*path, k)
            style = self.style(v)
            if style == "dotted" and v and all(not isinstance(c, (dict, list)) for c in v.values()):
                body += "".join(f"{self.key(k)}.{self.key(c)} = {self.value(cv, (*here, c))}\n" for c, cv in v.items())
            elif style in ("header", "aot", "dotted"):
                later.append((k, v, style))
            else:
                body += f"{self.key(k)} = {self.value(v, here)}{' # c' if self.draw(st.booleans()) else ''}\n"
        self.order[path] = [k for k in t if k not in {x for x, _, _ in later}] + [k for k, _, _ in later]
        for k, v, style in later:
            name = ".".join(self.key(p) for p in (*[p for p in path if isinstance(p, str)], k))
            if style == "aot":
                for i, element in enumerate(v):
                    body += f"\n[[{name}]]\n" + self.table(element, (*path, k, i))
            else:
                body += f"\n[{name}] # table\n" + self.table(v, (*path, k))
        return body


@st.composite
def toml_documents(draw: Any) -> Doc:
    truth = draw(_toml_table(0).filter(lambda t: bool(leaves_of(t)) and leaves_of(t) != [()]))
    r = TomlRenderer(draw)
    text = "# settings\n" + r.table(truth, ())
    truth = r.ordered(truth)
    leaves = tuple(Leaf(p, key_of(p), p not in r.multiline) for p in leaves_of(truth) if p and _is_leaf(truth, p))
    return Doc(finish(draw, text), truth, leaves)


def _is_leaf(truth: Any, path: tuple[Any, ...]) -> bool:
    return not isinstance(at(truth, path), (dict, list))


@FAST
@given(doc=toml_documents(), data=st.data())
def test_toml_edits_give_exactly_the_intended_document(doc, data):
    """TOML: tables, arrays of tables, dotted keys, inline tables, arrays over lines, multi-line strings."""
    check_edit("toml", doc, data)


# --- INI -------------------------------------------------------------------------------

INI_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,4}", fullmatch=True)
INI_LINE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=8).map(str.strip)
INI_VALUES = st.one_of(
    INI_LINE, st.sampled_from(["5", "0.5", "1e3", "a = b", "x: y", "# not a comment", "100%"]),
    st.tuples(INI_LINE.filter(bool), INI_LINE.filter(lambda s: bool(s) and s[0] not in "#;")).map("\n".join),
)
INI_SECTION = st.dictionaries(INI_NAMES, INI_VALUES, min_size=1, max_size=3)


@st.composite
def ini_documents(draw: Any) -> Doc:
    sections = draw(st.dictionaries(INI_NAMES, INI_SECTION, min_size=1, max_size=3))
    defaults = draw(st.none() | INI_SECTION)
    text = ""
    for name, options in ([("DEFAULT", defaults)] if defaults is not None else []) + list(sections.items()):
        text += draw(st.sampled_from(["", "# comment\n", "; note\n\n"])) + f"[{name}]\n"
        for opt, value in options.items():
            delimiter = draw(st.sampled_from([" = ", "=", ": ", " : "]))
            text += f"{opt}{delimiter}{value}".replace("\n", "\n    ") + "\n" + draw(st.sampled_from(["", "\n"]))
    own = {"DEFAULT": defaults or {}, **sections}
    truth = {"DEFAULT": own["DEFAULT"], **{s: {**own["DEFAULT"], **o} for s, o in sections.items()}}
    leaves = tuple(
        Leaf((s, o), f"{s}.{o}", "\n" not in v and (s != "DEFAULT" or all(o in sections[x] for x in sections)))
        for s, options in own.items() for o, v in options.items()
    )
    return Doc(finish(draw, text), truth, leaves)


@FAST
@given(doc=ini_documents(), data=st.data())
def test_ini_edits_give_exactly_the_intended_document(doc, data):
    """INI: values are the rest of the line, continuation lines, DEFAULT shared by every section."""
    check_edit("ini", doc, data)


# --- .env ------------------------------------------------------------------------------

ENV_NAMES = st.sampled_from(["A", "B_2", "PORT", "_X", "LONG_NAME"])
ENV_VALUES = st.text(st.characters(blacklist_characters="$", blacklist_categories=("Cs",)), max_size=8) | \
    st.sampled_from(["5", "0.5", "abc", "a/b:c", ""])
_ENV_DOUBLE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _env_value(draw: Any, v: str) -> str:
    styles = ['"']
    if re.fullmatch(r"[A-Za-z0-9_./:-]*", v):
        styles.append("")
    if "\n" not in v and "\r" not in v:
        styles.append("'")
    style = draw(st.sampled_from(styles))
    if style == "'":
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return v if style == "" else '"' + "".join(_ENV_DOUBLE.get(c, c) for c in v) + '"'


@st.composite
def env_documents(draw: Any) -> Doc:
    bindings = draw(st.lists(st.tuples(ENV_NAMES, ENV_VALUES), min_size=1, max_size=5))
    text = ""
    for name, value in bindings:
        text += draw(st.sampled_from(["", "# comment\n", "\n"]))
        export = draw(st.sampled_from(["", "export "]))
        text += f"{export}{name}{draw(st.sampled_from(['=', ' = ']))}{_env_value(draw, value)}"
        text += draw(st.sampled_from(["", " # c"])) + "\n"
    truth = dict(bindings)
    return Doc(finish(draw, text), truth, tuple(Leaf((k,), k, True) for k in truth))


@FAST
@given(doc=env_documents(), data=st.data())
def test_env_edits_give_exactly_the_intended_document(doc, data):
    """.env: bare, single- and double-quoted values, export, comments, repeated keys (the last wins)."""
    check_edit("env", doc, data)


# --- any text at all -------------------------------------------------------------------

JUNK = st.text(st.sampled_from([*list("ab01:=[]{}\"'#&*!-., \t\n\r\\|>%$@~"), "\ufeff", "\x85", "é", "\x00"]),
               max_size=40) | st.text(max_size=40)
JUNK_KEYS = st.sampled_from(["a", "b", "a.b", "a[0]", "a.b[1].c", "s.a", "DEFAULT.a", "A", "a.", "[0]", "a..b", ""]) \
    | st.text(max_size=5)


@settings(max_examples=EXAMPLES * 2, deadline=None)
@given(fmt=st.sampled_from(list(FILES)), text=JUNK, key=JUNK_KEYS, data=st.data())
def test_any_text_is_refused_only_with_an_edit_error(fmt, text, key, data):
    """Whatever the file holds, locating or editing a value raises EditError or nothing."""
    for attempt in (lambda: find_span(text, fmt, key=key), lambda: _edit(data.draw(actions(fmt, key)), text)):
        try:
            attempt()
        except (EditError, AtBound) as exc:
            assert "internal error" not in str(exc)


# --- plain edits in simple documents are accepted --------------------------------------


@pytest.mark.parametrize(
    "fmt, text, key, value, expected",
    [
        ("yaml", "a: 1\nb: x\n", "a", 2, "a: 2\nb: x\n"),
        ("yaml", "a: 1\nb: x\n", "b", "y z", "a: 1\nb: y z\n"),
        ("yaml", "a: {b: [1, 2]}\n", "a.b[1]", 2.5, "a: {b: [1, 2.5]}\n"),
        ("yaml", "a: 'x'\n", "a", True, "a: true\n"),
        ("json", '{"a": 1, "b": "x"}', "b", 3, '{"a": 1, "b": 3}'),
        ("json", '{"a": [1, {"b": null}]}', "a[1].b", "s", '{"a": [1, {"b": "s"}]}'),
        ("toml", "[a]\nb = 1\n[[c]]\nd = 'x'\n", "c[0].d", "y", "[a]\nb = 1\n[[c]]\nd = 'y'\n"),
        ("toml", "a = [1, 2]\n", "a[0]", 0.5, "a = [0.5, 2]\n"),
        ("ini", "[s]\na = 1\n", "s.a", 2, "[s]\na = 2\n"),
        ("env", "A='x'\nB=1\n", "A", "y", "A='y'\nB=1\n"),
    ],
)
def test_plain_edits_in_simple_documents_are_accepted(fmt, text, key, value, expected):
    """The ordinary case: one plain value set, written as the format writes it."""
    assert _edit(SetValue(file=FILES[fmt], key=key, value=value, at=AT), text).text == expected
