"""engine.errors: the tree its docstring draws is the class hierarchy, and AlertPayloadError sits in it with
the JSON path of what is wrong, its message (the receiver's 400 answer) unchanged."""

from __future__ import annotations

import json
import re

import pytest
from suture.engine import alerts, errors
from suture.engine.alerts import parse_webhook
from suture.engine.errors import AlertPayloadError, SutureError

BRANCH = re.compile(r"[├└]── (\w+)")


def drawn() -> dict[str, str]:
    """class -> parent, as the docstring's tree draws them (the column of a branch is its depth)."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = [(-1, "SutureError")]
    for line in (errors.__doc__ or "").splitlines():
        m = BRANCH.search(line)
        if m is None:
            continue
        while stack[-1][0] >= m.start():
            stack.pop()
        parents[m[1]] = stack[-1][1]
        stack.append((m.start(), m[1]))
    return parents


def test_the_docstring_tree_is_the_hierarchy() -> None:
    """Every branch is a class of engine.errors under the parent drawn; every SutureError there is drawn."""
    parents = drawn()
    assert parents["AlertPayloadError"] == "SutureError" and parents["Conflict"] == "ActionError"
    for name, parent in parents.items():
        assert getattr(errors, name).__bases__ == (getattr(errors, parent),), name
    declared = {name for name, value in vars(errors).items()
                if isinstance(value, type) and issubclass(value, SutureError) and value is not SutureError}
    assert declared == set(parents)


def test_alerts_raises_the_tree_s_class() -> None:
    """engine.alerts raises (and still offers) the class of engine.errors, not a copy."""
    assert alerts.AlertPayloadError is AlertPayloadError


def reason_and_path(body: bytes | object) -> tuple[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(AlertPayloadError) as caught:
        parse_webhook(raw, at=0.0)
    return str(caught.value), caught.value.path


FIRING = {"status": "firing", "labels": {"alertname": "A"}}


@pytest.mark.parametrize(("body", "reason", "path"), [
    (b"alerts!", "not JSON: Expecting value: line 1 column 1 (char 0)", ""),
    (b'{"version": "4", "version": "4", "alerts": []}', 'an object repeats the key "version"', ""),
    ([], "the payload must be an object, got a list", ""),
    ({"alerts": []}, 'version is missing (Alertmanager sends "4")', "version"),
    ({"version": "4"}, "alerts is missing", "alerts"),
    ({"version": "4", "alerts": [FIRING, {"status": "firing", "labels": {}}]},
     "alerts[1].labels.alertname is missing", "alerts[1].labels.alertname"),
    ({"version": "4", "alerts": [{"status": "pending", "labels": {"alertname": "A"}}]},
     'alerts[0].status must be firing or resolved, got "pending"', "alerts[0].status"),
    ({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A", "service": 1}}]},
     "alerts[0].labels.service must be a string, got a number", "alerts[0].labels.service"),
    ({"version": "4", "alerts": [FIRING | {"endsAt": "2026-01-02T03:04:05"}]},
     'alerts[0].endsAt has no time zone: "2026-01-02T03:04:05"', "alerts[0].endsAt"),
    ({"version": "4", "commonLabels": {"a b": "x\x00"}, "alerts": []},
     'commonLabels."a b" is not valid text (a NUL or a lone surrogate)', 'commonLabels."a b"'),
])
def test_a_payload_error_says_where_in_its_path(body: object, reason: str, path: str) -> None:
    """The message is the answer the receiver gives (400); ``path`` is where alone ("" for the whole body)."""
    assert reason_and_path(body) == (reason, path)
