"""How a typed value is written in each format, and what an adjust means.

An edit starts from the *intended* value, typed (str, int, float, bool), and
asks this module for the characters that write it where the old value was.
Each writer gives its candidates best first (keep the old quoting, else the
plainest form that reads back as the same value); the edit tries them against
the format's real parser and keeps the first that gives exactly the intended
document. A value a format cannot hold (NaN, a string INI would strip) is
refused here with the reason.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any, Literal

import yaml

from .errors import AtBound, EditError
from .spans import YAML_BREAKS, Format, Span

Scalar = str | int | float | bool

# A replacement: text[start:end] becomes chars.
Replacement = tuple[int, int, str]


def float_text(value: float) -> str:
    """The shortest text that reads back as ``value``, always with a '.' (``5.0e-05``, not ``5e-05``).

    YAML 1.1 (PyYAML) reads ``5e-05`` as a string; JSON and TOML accept both.
    """
    if math.isnan(value) or math.isinf(value):
        raise EditError(f"refusing to write {value}")
    text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}{e}{exponent}"


def as_text(value: Scalar) -> str:
    """A value as INI and .env hold it: they hold strings only."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    return value


def intended_for(fmt: Format, value: Any) -> Any:
    if fmt in ("ini", "env"):
        if not isinstance(value, (str, int, float)):
            raise EditError(f"cannot write {value!r} in a {fmt} file")
        return as_text(value)
    if value is not None and not isinstance(value, (str, int, float)):
        raise EditError(f"cannot write {value!r}: only strings, numbers and booleans")
    return value


# --- numbers and adjust --------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INTEGER = re.compile(r"[+-]?\d+")


def parse_number(text: str) -> float:
    t = text.strip().replace("_", "")
    if not _NUMBER.match(t):
        raise EditError(f"{text!r} is not a number")
    return float(t)


def format_number(value: float, like: str) -> str:
    """Write ``value`` the way ``like`` was written (an integer stays an integer when it can)."""
    if math.isnan(value) or math.isinf(value):
        raise EditError(f"refusing to write {value}")
    if _INTEGER.fullmatch(like.strip().replace("_", "")) and value == int(value):
        return str(int(value))
    text = f"{value:.12g}"  # 0.1 * 3 is written 0.3
    if "e" in text or "E" in text:
        return float_text(value)
    return text if "." in text else text + ".0"


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


def number_of(span: Span) -> float:
    """The number an adjust starts from: the value as the parser read it (YAML ``0x10`` is 16)."""
    value = span.value
    if isinstance(value, bool) or value is None:
        what = "empty" if value is None else "true" if value else "false"
        raise EditError(f"{span.text!r} is {what}, not a number")
    if isinstance(value, str):
        return parse_number(value)
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise EditError(f"{span.text!r} is too large to adjust") from None
    raise EditError(f"{span.text!r} is not a number")


def adjusted(new: float, span: Span) -> Scalar:
    """The typed result of an adjust: an int stays an int when the result is whole, a float stays
    a float, a string (a quoted number, any INI or .env value) stays a string written like the old one."""
    if math.isnan(new) or math.isinf(new):
        raise EditError(f"refusing to write {new}")
    old = span.value
    if isinstance(old, str):
        return format_number(new, old)
    if isinstance(old, int) and not isinstance(old, bool) and new == int(new):
        return int(new)
    return float(format_number(new, "0.0"))


# --- YAML ------------------------------------------------------------------------------

_PRINTABLE = re.compile("[\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_YAML_ESCAPES = {
    "\0": "0", "\x07": "a", "\b": "b", "\t": "t", "\n": "n", "\v": "v", "\f": "f", "\r": "r",
    "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N", "\u2028": "L", "\u2029": "P",
}
_STR = "tag:yaml.org,2002:str"


def _yaml_escape(c: str) -> str:
    if c in _YAML_ESCAPES:
        return "\\" + _YAML_ESCAPES[c]
    if _PRINTABLE.fullmatch(c) and c != "\ufeff":
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _yaml_plain_ok(s: str) -> bool:
    """PyYAML reads ``s`` written bare back as that same string, with no escaping needed."""
    if not s or yaml.resolver.Resolver().resolve(yaml.ScalarNode, s, (True, False)) != _STR:  # type: ignore[no-untyped-call]
        return False
    analysis = yaml.emitter.Emitter(io.StringIO()).analyze_scalar(s)
    return bool(analysis.allow_block_plain) and not analysis.multiline


def _yaml_single_ok(s: str) -> bool:
    return all(_PRINTABLE.fullmatch(c) for c in s) and not any(c in YAML_BREAKS for c in s)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return float_text(value)


def _quoted(span: Span, quote: str, inner: str) -> Replacement:
    """Keep the old quotes when they are the same, else replace them too."""
    if span.quote == quote:
        return span.start, span.end, inner
    start, end = span.outer
    return start, end, span.lead + quote + inner + quote + span.trail


def _bare(span: Span, chars: str) -> Replacement:
    start, end = span.outer
    return start, end, span.lead + chars + span.trail


def _yaml(value: Any, span: Span) -> list[Replacement]:
    if not isinstance(value, str):
        return [_bare(span, _yaml_scalar(value))]
    single = _quoted(span, "'", value.replace("'", "''"))
    double = _quoted(span, '"', "".join(_yaml_escape(c) for c in value))
    out = []
    if not span.quote and _yaml_plain_ok(value):
        out.append(_bare(span, value))
    if span.quote != '"' and _yaml_single_ok(value):
        out.append(single)
    out.append(double)
    return out


# --- JSON, TOML ------------------------------------------------------------------------


def _json(value: Any, span: Span) -> list[Replacement]:
    if isinstance(value, float):
        float_text(value)  # refuses NaN and infinities: json.dumps would write NaN
    if not isinstance(value, str):
        return [_bare(span, json.dumps(value))]
    try:
        value.encode("utf-8")
        text = json.dumps(value, ensure_ascii=False)
    except UnicodeEncodeError:  # a lone surrogate: only an escape can write it
        text = json.dumps(value)
    return [_quoted(span, '"', text[1:-1])]


_TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _toml_escape(c: str) -> str:
    if c in _TOML_ESCAPES:
        return _TOML_ESCAPES[c]
    if c < " " or c == "\x7f":
        return f"\\u{ord(c):04x}"
    return c


def _toml(value: Any, span: Span) -> list[Replacement]:
    if value is None:
        raise EditError("TOML has no null; refusing to write one")
    if not isinstance(value, str):
        return [_bare(span, _yaml_scalar(value))]
    out = []
    if span.quote == "'" and not any(c == "'" or (c < " " and c != "\t") or c == "\x7f" for c in value):
        out.append(_quoted(span, "'", value))
    out.append(_quoted(span, '"', "".join(_toml_escape(c) for c in value)))
    return out


# --- INI, .env -------------------------------------------------------------------------


def _ini(value: str, span: Span) -> list[Replacement]:
    if "\n" in value or "\r" in value:
        raise EditError(f"{value!r} has a line break: configparser would read the next line as more of it")
    if value != value.strip():
        raise EditError(f"{value!r} starts or ends with blanks that configparser strips")
    return [(span.start, span.end, value)]


_ENV_BARE = re.compile(r"[\w./:@%+,=~^-]*")
_ENV_DOUBLE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\x07": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v"}


def _env(value: str, span: Span) -> list[Replacement]:
    single = _quoted(span, "'", value.replace("\\", "\\\\").replace("'", "\\'"))
    double = _quoted(span, '"', "".join(_ENV_DOUBLE.get(c, c) for c in value))
    if span.quote == "'":
        return [single, double]
    if span.quote == '"':
        return [double, single]
    bare = [_bare(span, value)] if _ENV_BARE.fullmatch(value) and not value.startswith("#") else []
    return [*bare, double, single]


def write(fmt: Format, value: Any, span: Span) -> list[Replacement]:
    """Ways to write ``value`` where ``span`` is, best first."""
    if fmt == "yaml":
        return _yaml(value, span)
    if fmt == "json":
        return _json(value, span)
    if fmt == "toml":
        return _toml(value, span)
    if fmt == "ini":
        return _ini(value, span)
    if fmt == "env":
        return _env(value, span)
    raise EditError(f"suture cannot write typed values in {fmt} files")
