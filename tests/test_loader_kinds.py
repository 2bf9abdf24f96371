"""Each kind of condition and action is built, checked and carried out from one table: the tables agree."""

from __future__ import annotations

import typing

from suture.engine.build_actions import _CONFINED, ACTIONS
from suture.engine.build_conditions import LEAVES
from suture.engine.conditions import _CHECKS
from suture.engine.documents import load_schema
from suture.engine.playbook import LEAF_TYPES, Action

SCHEMA = load_schema("playbook")["$defs"]
ACTION_TYPES = typing.get_args(Action)


def test_every_leaf_condition_of_the_schema_has_a_builder() -> None:
    """The leaf kinds the schema accepts are the kinds the loader builds (all, any and not aside)."""
    assert sorted(LEAVES) == sorted(set(SCHEMA["condition"]["properties"]) - {"all", "any", "not"})


def test_every_action_of_the_schema_has_a_builder() -> None:
    """The action kinds the schema accepts are the kinds the loader builds."""
    assert sorted(ACTIONS) == sorted(SCHEMA["action"]["properties"])


def test_every_action_type_is_written_with_its_own_keyword() -> None:
    """An action type's ``keyword`` is the key its builder is registered under."""
    assert {t.keyword: t for t in ACTION_TYPES} == {k: typing.get_type_hints(b)["return"] for k, b in ACTIONS.items()}


def test_every_action_type_is_confined() -> None:
    """No action type escapes the config's allowlists by having no check."""
    assert set(_CONFINED) == set(ACTION_TYPES)


def test_every_leaf_type_is_judged_by_some_reading() -> None:
    """holds() knows every leaf type."""
    assert {condition for condition, _ in _CHECKS} == set(LEAF_TYPES)
