"""Text the fleet stores: whatever a Python string holds, PostgreSQL accepts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from suture.engine.fleet_values import pg_text


@given(st.lists(st.characters() | st.characters(categories=["Cs"]) | st.just("\x00")).map("".join))
def test_pg_text_is_always_storable_and_changes_only_what_postgresql_refuses(text: str) -> None:
    """Any Python string (NUL and lone surrogates included) becomes encodable UTF-8 without NUL, of the same
    length; every other character is kept."""
    out = pg_text(text)
    out.encode("utf-8")
    assert "\x00" not in out and len(out) == len(text)
    for before, after in zip(text, out, strict=True):
        refused = before == "\x00" or "\ud800" <= before <= "\udfff"
        assert after == ("\ufffd" if refused else before)
