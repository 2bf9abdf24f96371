"""The statuses of a fix, and the named sets of them: the one list every module reads.

A fix row's ``status`` moves on while the fix is carried out and ends in a final one,
written once (engine.store)::

    matched -> planned -> backed_up -> applied -> validating -> succeeded
                                                   \\-> rolling_back -> rolled_back | inconclusive | conflict | failed
    matched -> proposed | shadow | skipped        (a decision that applies nothing)
    matched -> exhausted                           (at a bound, or the fix would change nothing)

:class:`FixStatus` is a ``StrEnum``: each member *is* its string (``FixStatus.FAILED ==
"failed"``), so the history's DuckDB values, the JSON of the API and the journal are
the same as when they were written as literals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class FixStatus(StrEnum):
    MATCHED = "matched"
    PLANNED = "planned"
    BACKED_UP = "backed_up"
    APPLIED = "applied"
    VALIDATING = "validating"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    PROPOSED = "proposed"
    SHADOW = "shadow"
    CONFLICT = "conflict"
    EXHAUSTED = "exhausted"
    INCONCLUSIVE = "inconclusive"
    SKIPPED = "skipped"


_S = FixStatus

# A fix in one of these has ended; its row is never rewritten.
FINAL = frozenset({_S.SUCCEEDED, _S.ROLLED_BACK, _S.FAILED, _S.PROPOSED, _S.SHADOW, _S.CONFLICT, _S.EXHAUSTED,
                   _S.INCONCLUSIVE, _S.SKIPPED})
# What learning counts: a success, and the failures (max_attempts suspends a playbook after enough of these).
SUCCESS = frozenset({_S.SUCCEEDED})
FAILURE = frozenset({_S.ROLLED_BACK, _S.FAILED, _S.INCONCLUSIVE})
# The ends of a fix that was carried out (or tried to be): not a proposal, a shadow or a skip.
APPLIED_FINAL = frozenset({_S.SUCCEEDED, _S.ROLLED_BACK, _S.FAILED, _S.EXHAUSTED, _S.CONFLICT, _S.INCONCLUSIVE})
# Ends a person should hear about (notify.webhook).
ALERT = frozenset({_S.PROPOSED, _S.ROLLED_BACK, _S.CONFLICT, _S.EXHAUSTED, _S.INCONCLUSIVE, _S.FAILED})
# The final status of a decision that applies nothing, by its verdict (engine.decide).
DECLINED: Mapping[str, FixStatus] = {"propose": _S.PROPOSED, "shadow": _S.SHADOW, "skip": _S.SKIPPED}


def sql_list(statuses: Iterable[str]) -> str:
    """A constant SQL list of status names, sorted: ``('failed', 'rolled_back')``. Never user input:
    anything that is not a status raises ValueError."""
    return "(" + ", ".join(f"'{FixStatus(s).value}'" for s in sorted(statuses)) + ")"
