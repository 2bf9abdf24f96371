"""Each kind of condition and action is built, checked and carried out from one table: the tables agree."""

from __future__ import annotations

import json
import typing

from suture.engine.build_actions import _CONFINED, ACTIONS
from suture.engine.build_conditions import LEAVES
from suture.engine.conditions import _CHECKS
from suture.engine.documents import load_schema
from suture.engine.playbook import (
    LEAF_TYPES,
    Action,
    Adjust,
    Exec,
    Notify,
    Replace,
    Restart,
    Restore,
    SetValue,
    Stop,
    Where,
    action_as_json,
    action_from_json,
)

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


def test_every_action_type_survives_the_journal() -> None:
    """An action of each type, written to the journal's JSON and read back, is the same action (its
    ``keyword`` is the type's, not a field: it is neither written nor expected back)."""
    at = Where(file="pb.yaml", line=3, path="fix[0]")
    examples = [
        Adjust(file="c.yaml", key="k", op="multiply", amount=2.0, maximum=5.0, at=at),
        SetValue(file="c.yaml", key="k", value=True, at=at),
        Replace(file="c.txt", regex="a+", with_="b", at=at),
        Restore(file="c.yaml", at=at),
        Restart(container="app", at=at),
        Stop(container="app", timeout=3.0, at=at),
        Exec(argv=("systemctl", "restart", "app"), timeout=5.0, at=at),
        Notify(webhook="https://hooks.example.test/x", at=at),
    ]
    assert {type(a) for a in examples} == set(ACTION_TYPES)

    back = [action_from_json(json.loads(json.dumps(action_as_json(a)))) for a in examples]

    assert back == examples
    assert [b.at for b in back] == [at] * len(examples)
