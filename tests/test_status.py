"""Fix statuses: one enum, its named sets, and the strings the history already holds."""

from __future__ import annotations

import json

import pytest
from suture.engine.status import (
    ALERT,
    APPLIED_FINAL,
    DECLINED,
    FAILURE,
    FINAL,
    SUCCESS,
    FixStatus,
    sql_list,
)


def test_a_status_is_its_string() -> None:
    """Members compare equal to, format as and serialise as the literals the history holds."""
    assert (FixStatus.ROLLED_BACK == "rolled_back", f"{FixStatus.FAILED}", json.dumps([FixStatus.SHADOW])) == (
        True, "failed", '["shadow"]')


@pytest.mark.parametrize(("name", "statuses"), [("success", SUCCESS), ("failure", FAILURE),
                                                ("applied_final", APPLIED_FINAL), ("alert", ALERT),
                                                ("declined", frozenset(DECLINED.values()))])
def test_every_named_set_holds_final_statuses(name: str, statuses: frozenset[FixStatus]) -> None:
    """Each named set is a subset of FINAL: none of them names a status a fix moves on from."""
    assert statuses - FINAL == set(), name


def test_success_and_failure_do_not_overlap() -> None:
    """Learning counts a fix once: as a success or as a failure, never both."""
    assert not SUCCESS & FAILURE


def test_the_statuses_in_between_are_not_final() -> None:
    """A fix being carried out is not finished."""
    assert set(FixStatus) - FINAL == {FixStatus.MATCHED, FixStatus.PLANNED, FixStatus.BACKED_UP, FixStatus.APPLIED,
                                      FixStatus.VALIDATING, FixStatus.ROLLING_BACK}


def test_sql_list_is_sorted_and_quoted() -> None:
    """A constant SQL list, the same whatever the set's order."""
    assert sql_list(FAILURE) == "('failed', 'inconclusive', 'rolled_back')"


def test_sql_list_refuses_what_is_not_a_status() -> None:
    """Only our own names reach SQL text."""
    with pytest.raises(ValueError, match="is not a valid FixStatus"):
        sql_list(["failed", "x'); DROP TABLE fixes; --"])
