"""Surgical edits: only the value's bytes change; everything else is kept byte for byte."""

from __future__ import annotations

import pytest
from suture.engine.edits import (
    adjust_value,
    edit_value,
    format_number,
    parse_number,
    replace_text,
)
from suture.engine.errors import AtBound, EditError


def _times(factor):
    def compute(span):
        return format_number(parse_number(span.text) * factor, span.text)

    return compute


def _only_value_changed(before: str, after: str, old: str, new: str) -> None:
    """The texts differ in exactly one place, where old became new."""
    p = 0
    while before[p] == after[p]:
        p += 1
    starts = [
        k for k in range(max(0, p - len(old)), p + 1)
        if before[k:k + len(old)] == old and after[k:k + len(new)] == new
        and before[:k] == after[:k] and before[k + len(old):] == after[k + len(new):]
    ]
    assert starts, f"more than {old!r} -> {new!r} changed"


YAML = """\
# comment at the top   
upstream:   # trailing comment
    url:    'https://x.test'     # single quoted
    request_delay_s:      0.5     # odd spacing
    anchors: &defaults {retries: 3,   backoff: "1.5"}
    copy: *defaults
list:
  - {port: 8080}
  - port: 9090
"""


def test_yaml_edit_changes_only_the_value_bytes():
    """Comments, odd spacing, quoting, anchors and order survive byte for byte."""
    edit = edit_value(YAML, "yaml", key="upstream.request_delay_s", regex=None, compute=_times(1.5))
    assert (edit.old, edit.new, edit.line) == ("0.5", "0.75", 4)
    _only_value_changed(YAML, edit.text, "0.5", "0.75")


def test_yaml_quoted_number_keeps_its_quotes():
    """A number written as a quoted string stays quoted."""
    edit = edit_value(YAML, "yaml", key="upstream.anchors.backoff", regex=None, compute=_times(2))
    assert '"3.0"' in edit.text
    _only_value_changed(YAML, edit.text, "1.5", "3.0")


def test_yaml_list_index_in_key():
    """servers[1].port reaches into a list."""
    edit = edit_value(YAML, "yaml", key="list[1].port", regex=None, compute=_times(2))
    _only_value_changed(YAML, edit.text, "9090", "18180")


def test_yaml_crlf_and_bom_are_kept():
    """Windows line endings and a BOM are not touched."""
    text = "\ufeffa:\r\n  b: 1  \r\n  c: 2\r\n"
    edit = edit_value(text, "yaml", key="a.b", regex=None, compute=_times(3))
    assert edit.text == "\ufeffa:\r\n  b: 3  \r\n  c: 2\r\n"


def test_yaml_missing_key_is_a_clear_error():
    """A key that is not there names the missing part."""
    with pytest.raises(EditError, match="no 'delay'"):
        edit_value(YAML, "yaml", key="upstream.delay", regex=None, compute=_times(2))


JSON = '{\n    "pool": {"size": 10, "timeout": 2.50},\n    "name": "svc",\n    "list": [1, 2, {"x": 3}]\n}\n'


def test_json_edit_keeps_indentation_and_key_order():
    """Only the number changes; indentation, spacing and order stay."""
    edit = edit_value(JSON, "json", key="pool.timeout", regex=None, compute=_times(2))
    _only_value_changed(JSON, edit.text, "2.50", "5.0")


def test_json_nested_array_path():
    """list[2].x reaches into arrays of objects."""
    edit = edit_value(JSON, "json", key="list[2].x", regex=None, compute=_times(2))
    _only_value_changed(JSON, edit.text, "3", "6")


def test_regex_edit_of_source_code():
    """asyncio.sleep(0.8) becomes asyncio.sleep(1.2) and nothing else moves."""
    src = "async def loop():\n    await asyncio.sleep(0.8)  # pacing\n"
    edit = edit_value(src, "text", key=None, regex=r"asyncio\.sleep\((?P<value>[0-9.]+)\)", compute=_times(1.5))
    assert edit.text == "async def loop():\n    await asyncio.sleep(1.2)  # pacing\n"


def test_regex_matching_several_places_is_refused():
    """An ambiguous regex names the lines instead of guessing."""
    with pytest.raises(EditError, match="matches 2 places"):
        edit_value("sleep(1)\nsleep(2)\n", "text", key=None, regex=r"sleep\((?P<value>\d+)\)", compute=_times(2))


@pytest.mark.parametrize(
    "fmt, text, key, expected",
    [
        ("toml", "title = 'x'\n[db]\npool = 5   # size\n", "db.pool", "title = 'x'\n[db]\npool = 10   # size\n"),
        ("ini", "[db]\r\npool: 5\r\n", "db.pool", "[db]\r\npool: 10\r\n"),
        ("env", "export POOL=5\nOTHER='1'\n", "POOL", "export POOL=10\nOTHER='1'\n"),
    ],
)
def test_line_formats_edit_in_place(fmt, text, key, expected):
    """TOML, INI and .env change the value and keep the line."""
    assert edit_value(text, fmt, key=key, regex=None, compute=_times(2)).text == expected


@pytest.mark.parametrize(
    "value, like, expected",
    [(0.75, "0.5", "0.75"), (10.0, "5", "10"), (3.0, "1.5", "3.0"), (0.1 * 3, "0.1", "0.3"), (7.5, "5", "7.5")],
)
def test_numbers_are_written_like_the_old_value(value, like, expected):
    """Integers stay integers when they can; floats are written briefly."""
    assert format_number(value, like) == expected


def test_adjust_clamps_to_bounds():
    """multiply then clamp to max."""
    assert adjust_value(4.0, "multiply", 2, None, 5.0, None) == 5.0


def test_adjust_at_its_bound_means_no_fix_is_possible():
    """A value already at max cannot be raised: AtBound."""
    with pytest.raises(AtBound, match="already at its max"):
        adjust_value(5.0, "multiply", 2, None, 5.0, None)


def test_replace_inserts_a_literal_never_a_backreference():
    """`with` is literal: \\1 and $(id) are written as they are."""
    edit = replace_text("mode = fast\n", r"mode = \w+", r"mode = \1 $(id)")
    assert edit.text == "mode = \\1 $(id)\n"
