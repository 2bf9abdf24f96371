"""Surgical edits: only the value's bytes change; everything else is kept byte for byte."""

from __future__ import annotations

import io

import pytest
import yaml
from dotenv import dotenv_values
from suture.engine.actions import plan_fix
from suture.engine.edits import (
    adjust_value,
    edit_value,
    format_number,
    parse_number,
    replace_text,
)
from suture.engine.errors import AtBound, EditError
from suture.engine.playbook import Adjust, Replace, SetValue, Where


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
    text = YAML.replace("    copy: *defaults\n", "")  # an alias would change with it: see the anchor tests
    edit = edit_value(text, "yaml", key="upstream.anchors.backoff", regex=None, compute=_times(2))
    assert '"3.0"' in edit.text
    _only_value_changed(text, edit.text, "1.5", "3.0")


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


# --- regressions: the new document is read by the real parser (issue 12 item 1) --------


def _fix(tmp_path, name: str, text: str, **action):
    """Plan one adjust (``multiply``/``add``) or set (``value``) on a file holding ``text``."""
    (tmp_path / name).write_bytes(text.encode())
    at = Where(file="playbook.yaml", line=1, path="fix[0]")
    if "value" in action:
        act = SetValue(file=name, at=at, **action)
    else:
        op = "multiply" if "multiply" in action else "add"
        act = Adjust(file=name, key=action.pop("key"), op=op, amount=action.pop(op), at=at, **action)
    plan = plan_fix([act], target_root=tmp_path, allowed=[tmp_path])
    if not plan.files:
        return text, ()
    return plan.files[0].after.decode(), plan.changes


def test_yaml_anchor_before_a_value_on_the_next_line_stays(tmp_path):
    """`timeout: &t` then the value on the next line: the value changes, the anchor stays, the journal is true."""
    after, changes = _fix(tmp_path, "s.yaml", "timeout: &t\n  5\n", key="timeout", multiply=2)
    assert after == "timeout: &t\n  10\n"
    assert [(c.old, c.new) for c in changes] == [("5", "10")]


def test_yaml_comment_after_an_anchor_is_kept(tmp_path):
    """A comment between the anchor and the value is not part of the value."""
    after, _ = _fix(tmp_path, "s.yaml", "a: &m # keep me\n  5\n", key="a", multiply=2)
    assert after == "a: &m # keep me\n  10\n"


def test_yaml_value_used_through_an_alias_is_refused(tmp_path):
    """Changing an anchored value would change its aliases too: refused, saying where."""
    with pytest.raises(EditError, match=r"anchored \(&t\) and also used at other: changing it would change 2 places"):
        _fix(tmp_path, "s.yaml", "timeout: &t\n  5\nother: *t\n", key="timeout", multiply=2)


@pytest.mark.parametrize("value", ["off", "yes", "null", "foo # bar"])
def test_yaml_string_the_resolver_reads_otherwise_is_quoted(tmp_path, value):
    """A string that bare would read back as a bool, null or a shorter string is written quoted."""
    after, _ = _fix(tmp_path, "s.yaml", "a: x\n", key="a", value=value)
    assert (after, yaml.safe_load(after)) == (f"a: '{value}'\n", {"a": value})


def test_yaml_small_float_is_written_as_a_yaml_float(tmp_path):
    """0.0002 * 0.25 is written 5.0e-05 (PyYAML reads 5e-05 as a string)."""
    after, _ = _fix(tmp_path, "s.yaml", "a: 0.0002\n", key="a", multiply=0.25)
    assert (after, yaml.safe_load(after)) == ("a: 5.0e-05\n", {"a": 5e-05})


@pytest.mark.parametrize("text, expected", [("a:", "a: 5"), ("a: ", "a: 5"), ("a:\n", "a: 5\n")])
def test_yaml_empty_value_at_the_end_can_be_set(tmp_path, text, expected):
    """An empty value, even at the end of a file without a newline, is set after one space."""
    assert _fix(tmp_path, "s.yaml", text, key="a", value=5)[0] == expected


@pytest.mark.parametrize(
    "name, text",
    [("s.yaml", "a: 1\nb: " + "[" * 1000 + "]" * 1000 + "\n"), ("s.json", '{"a": 1, "b": ' + "[" * 100_000 + "]" * 100_000 + "}")],
)
def test_deep_nesting_is_an_edit_error(tmp_path, name, text):
    """A document nested too deep for the parser is refused with the reason, not a RecursionError."""
    with pytest.raises(EditError, match="nesting is too deep"):
        _fix(tmp_path, name, text, key="a", value=2)


@pytest.mark.parametrize("special", ["NaN", "Infinity", "-Infinity"])
def test_json_special_numbers_elsewhere_do_not_stop_an_edit(tmp_path, special):
    """json.loads accepts NaN and Infinity, so the scanner does too."""
    after, _ = _fix(tmp_path, "s.json", f'{{"a": {special}, "b": 1}}', key="b", value=2)
    assert after == f'{{"a": {special}, "b": 2}}'


def test_ini_value_is_the_whole_rest_of_the_line(tmp_path):
    """configparser reads `hello world` whole, so the whole of it is replaced."""
    after, changes = _fix(tmp_path, "s.ini", "[s]\nx = hello world\n", key="s.x", value="x")
    assert (after, [(c.old, c.new) for c in changes]) == ("[s]\nx = x\n", [("hello world", "x")])


def test_env_string_with_a_blank_is_quoted(tmp_path):
    """A value that is not a plain word is written in double quotes."""
    after, _ = _fix(tmp_path, ".env", "A=x\n", key="A", value="two words")
    assert (after, dotenv_values(stream=io.StringIO(after))) == ('A="two words"\n', {"A": "two words"})


def test_toml_multiline_string_holding_a_header_is_not_a_table(tmp_path):
    """A `[b]` line inside a \"\"\" string is text, not the table b."""
    text = 'a = """\n[b]\nx = 1\n"""\n[b]\nx = 2\n'
    after, _ = _fix(tmp_path, "s.toml", text, key="b.x", multiply=2)
    assert after == 'a = """\n[b]\nx = 1\n"""\n[b]\nx = 4\n'


# --- regex edits of structured files: the document is checked as a whole -------------------


def _regex_plan(tmp_path, name: str, text: str, action):
    (tmp_path / name).write_text(text)
    return plan_fix([action], target_root=tmp_path, allowed=[tmp_path])


AT = Where(file="playbook.yaml", line=1, path="fix[0]")


def test_an_adjust_by_regex_inside_a_comment_is_refused(tmp_path):
    """A regex that matches a number in a YAML comment would change no data while the journal said it did."""
    text = "# the delay was 0.5 once\ndelay: 0.5\n"
    act = Adjust(file="s.yaml", regex=r"was (?P<value>[0-9.]+)", op="multiply", amount=2, at=AT)
    with pytest.raises(EditError, match="holds no value of the document"):
        _regex_plan(tmp_path, "s.yaml", text, act)


def test_an_adjust_by_regex_of_a_value_changes_that_number(tmp_path):
    """The same regex style on the value itself is accepted: exactly one number changed."""
    act = Adjust(file="s.yaml", regex=r"delay: (?P<value>[0-9.]+)", op="multiply", amount=2, at=AT)
    plan = _regex_plan(tmp_path, "s.yaml", "# the delay\ndelay: 0.5\n", act)
    assert plan.files[0].after == b"# the delay\ndelay: 1.0\n"


def test_a_replace_that_breaks_a_structured_file_is_refused(tmp_path):
    """A literal replace may change a YAML file only into another valid YAML document."""
    act = Replace(file="s.yaml", regex=r"^mode: fast$", with_="mode: [unclosed", at=AT)
    with pytest.raises(EditError, match="would not parse"):
        _regex_plan(tmp_path, "s.yaml", "mode: fast\n", act)
