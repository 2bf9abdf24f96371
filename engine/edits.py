"""Surgical edits of text: find the exact characters of one value, replace only those.

Every format works the same way: locate the *span* of the value (its exact
characters, from the format's own tokens: :mod:`.spans`, :mod:`.linespans`),
write the *intended typed value* there (:mod:`.values`), and accept the edit
only if the whole new document, read by the format's real parser, is the old
one with exactly that value at the key (:mod:`.verify`). Otherwise the edit
is refused with the reason (EditError) and no text is returned. Comments,
order, quoting, anchors, line endings, a BOM and the trailing newline are kept
because they are never rewritten: only the value's characters change.

- YAML: PyYAML's composer finds the node, its ScalarToken the characters.
- JSON: a small scanner over text that ``json.loads`` already accepted.
- TOML, INI, .env: scanners that follow tomllib, configparser and python-dotenv.
- regex (any text file): the named group ``value``; a structured file must stay a valid document, and an
  adjust by regex must change exactly one number of it.

Pure functions of text; nothing here reads or writes files. No input text
makes these functions raise anything but EditError (or AtBound from an adjust).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import PurePath
from typing import Any

from .errors import ActionError, EditError
from .linespans import env_span, ini_span, toml_span
from .spans import Format, Span, json_span, regex_span, render_path, split_key, yaml_span
from .values import adjust_value, format_number, intended_for, parse_number, write
from .verify import differences, expected_document, explain, parse_document, same, value_at

__all__ = [
    "Format", "Span", "TextEdit", "adjust_value", "edit_value", "find_span", "format_number",
    "format_of", "parse_number", "replace_text", "split_key",
]


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


def splice(text: str, span: Span, new: str) -> str:
    return text[: span.start] + new + text[span.end :]


_LOCATE: dict[str, Callable[[str, str], Span]] = {
    "yaml": yaml_span, "json": json_span, "toml": toml_span, "ini": ini_span, "env": env_span,
}


def _guarded(what: Callable[[], Any]) -> Any:
    """Only suture's own errors leave: any other one is a bug here, reported as a refusal."""
    try:
        return what()
    except ActionError:
        raise
    except RecursionError:
        raise EditError("not editable: the document's nesting is too deep") from None
    except Exception as exc:  # invariant 13: no file content stops the core
        raise EditError(f"internal error while editing ({type(exc).__name__}: {exc}); refused") from exc


def find_span(text: str, fmt: Format, *, key: str | None = None, regex: str | None = None) -> Span:
    """Where the value lives: by ``regex`` in any text, else by ``key`` in a structured file."""
    if regex is not None:
        pattern = regex
        return _guarded(lambda: regex_span(text, pattern))  # type: ignore[no-any-return]
    if key is None:
        raise EditError("an edit needs a key or a regex")
    locate = _LOCATE.get(fmt)
    if locate is None:
        raise EditError("a key works only on YAML, JSON, TOML, INI and .env files; use regex for other text")
    name = key
    return _guarded(lambda: locate(text, name))  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TextEdit:
    """The result of an edit: the new text and what changed (``text[at:at+len(old)]`` became ``new``)."""

    text: str
    old: str
    new: str
    line: int
    at: int = 0

    @property
    def changed(self) -> bool:
        return self.old != self.new


def _literal(chars: str, old: Any) -> Any:
    """What characters from a ``compute`` callback mean: a number or boolean, or the string itself."""
    if isinstance(old, str):
        return chars
    if re.fullmatch(r"[+-]?\d+", chars) and not isinstance(old, float):
        return int(chars)
    if chars in ("true", "false"):
        return chars == "true"
    try:
        return float(parse_number(chars))
    except EditError:
        return chars


def _typed_edit(text: str, fmt: Format, key: str, intend: Callable[[Span], Any]) -> TextEdit:
    span = find_span(text, fmt, key=key)
    old_doc = parse_document(text, fmt)
    span = replace(span, value=value_at(old_doc, span.path))
    intended = intended_for(fmt, intend(span))
    line = text.count("\n", 0, span.start) + 1
    if same(intended, span.value):
        return TextEdit(text=text, old=span.text, new=span.text, line=line, at=span.start)
    expected = expected_document(old_doc, span.path, intended)
    reasons = []
    for start, end, chars in write(fmt, intended, span):
        try:
            chars.encode("utf-8")
        except UnicodeEncodeError:
            reasons.append(f"{chars!r} cannot be written as UTF-8")
            continue
        after = text[:start] + chars + text[end:]
        try:
            actual = parse_document(after, fmt)
        except EditError as exc:
            reasons.append(f"the edited file would not parse ({exc})")
            continue
        if same(expected, actual):
            return TextEdit(text=after, old=text[start:end], new=chars, line=line, at=start)
        reasons.append(explain(span, intended, expected, actual))
    raise EditError(f"setting {render_path(span.path)} to {intended!r} refused: {reasons[0]}")


def edit_value(
    text: str,
    fmt: Format,
    *,
    key: str | None,
    regex: str | None,
    compute: Callable[[Span], str] | None = None,
    intend: Callable[[Span], Any] | None = None,
) -> TextEdit:
    """Find the value and change it; refuse (EditError) unless exactly the intended value changed.

    ``intend(span)`` gives the new typed value (``span.value`` is the old one, as the
    format's parser reads it). ``compute(span)`` gives new characters instead: with a
    regex they are spliced as they are; with a key they are read as a literal (a number,
    true/false, else the string) and written as the format needs.
    """
    if regex is not None or key is None:
        if compute is None:
            raise EditError("a regex edit needs the new characters")
        span = find_span(text, fmt, key=key, regex=regex)
        new = _guarded(lambda: compute(span))
        after = splice(text, span, new)
        if new != span.text:
            _guarded(lambda: _check_regex_edit(text, after, fmt, number=True))
        return TextEdit(text=after, old=span.text, new=new, line=text.count("\n", 0, span.start) + 1, at=span.start)
    if intend is None:
        if compute is None:
            raise EditError("an edit needs the new value")
        chars_of = compute

        def intend(span: Span) -> Any:
            return _literal(chars_of(span), span.value)

    typed = intend
    return _guarded(lambda: _typed_edit(text, fmt, key, typed))  # type: ignore[no-any-return]


def _check_regex_edit(before: str, after: str, fmt: Format, *, number: bool) -> None:
    """A regex edit of a structured file keeps it a valid document, and a number edit changes one number.

    A regex has no key to check the value against, so the document is checked as a whole: if the file
    parsed before, it must parse after; an ``adjust`` must change exactly one value, a number, so a
    match inside a comment (which would change no data while the journal says it did) is refused.
    """
    if fmt == "text":
        return
    try:
        old = parse_document(before, fmt)
    except EditError:
        return  # not a valid document to begin with: there is nothing to keep valid
    try:
        new = parse_document(after, fmt)
    except EditError as exc:
        raise EditError(f"the edited file would not parse ({exc}); refused") from None
    if not number:
        return
    changed = differences(old, new)
    if not changed:
        raise EditError("the regex matched text that holds no value of the document (a comment?): the file's data "
                        "would not change; refused")
    if len(changed) > 1:
        raise EditError(f"the edit would change {', '.join(render_path(p) for p in changed)}; refused")
    was, now = value_at(old, changed[0]), value_at(new, changed[0])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (was, now)):
        raise EditError(f"the edit would change {render_path(changed[0])} from {was!r} to {now!r}, not one number "
                        "to another; refused")


def replace_text(text: str, pattern: str, literal: str, fmt: Format = "text") -> TextEdit:
    """Replace the one match of ``pattern`` with ``literal`` (no backreferences); a structured file stays valid."""
    try:
        rx = re.compile(pattern, re.M)
    except re.error as exc:
        raise EditError(f"/{pattern}/ is not a valid regex: {exc}") from exc
    matches = list(rx.finditer(text))
    if not matches:
        raise EditError(f"/{pattern}/ matches nothing")
    if len(matches) > 1:
        raise EditError(f"/{pattern}/ matches {len(matches)} places; make it match one")
    m = matches[0]
    after = text[: m.start()] + literal + text[m.end() :]
    if after != text:
        _guarded(lambda: _check_regex_edit(text, after, fmt, number=False))
    return TextEdit(text=after, old=m.group(0), new=literal, line=text.count("\n", 0, m.start()) + 1, at=m.start())
