"""Alertmanager's webhook payload read into AlertState values (engine.alerts.parse_webhook): the documented
fields, precise reasons for malformed payloads, bounds, the fingerprint computed as Alertmanager computes it,
and hostile JSON that only ever gets an AlertPayloadError."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from suture.engine.alerts import (
    MAX_ANNOTATION,
    MAX_LABEL_NAME,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    AlertPayloadError,
    AlertState,
    fingerprint,
    parse_webhook,
)
from suture.engine.errors import SutureError

AT = 1_790_000_000.0
# What Alertmanager 0.25 sent the suite's receiver (tests/test_alerts_receiver.py), as it sent it.
SENT = (b'{"receiver":"suture","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"HighErrorRate",'
        b'"service":"orders"},"annotations":{"summary":"x"},"startsAt":"2026-12-03T11:46:57.810911Z","endsAt":'
        b'"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"d874468041706f1c"}],"groupLabels":'
        b'{"alertname":"HighErrorRate","service":"orders"},"commonLabels":{"alertname":"HighErrorRate","service":'
        b'"orders"},"commonAnnotations":{"summary":"x"},"externalURL":"http://vm:39275","version":"4","groupKey":'
        b'"{}:{alertname=\\"HighErrorRate\\", service=\\"orders\\"}","truncatedAlerts":0}\n')


def payload(*alerts: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": "4", "groupKey": "{}:{alertname=\"A\"}", "status": "firing", "receiver": "suture",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
            "truncatedAlerts": 0, "alerts": list(alerts)} | top


def alert(name: str = "HighErrorRate", status: str = "firing", **fields: Any) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "service": "orders"}, "annotations": {},
            "startsAt": "2026-01-02T03:04:05.123456789Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom:9090/graph", "fingerprint": "d874468041706f1c"} | fields


def parse(data: Any, **options: Any) -> list[AlertState]:
    return parse_webhook(json.dumps(data).encode(), at=AT, **options)


def reason(data: Any) -> str:
    with pytest.raises(AlertPayloadError) as caught:
        parse_webhook(data if isinstance(data, bytes) else json.dumps(data).encode(), at=AT)
    return str(caught.value)


def test_what_alertmanager_sent_is_read_whole() -> None:
    """A notification as Alertmanager 0.25 sent it: one firing alert, its labels sorted, endsAt unset."""
    assert [AlertState(fingerprint="d874468041706f1c", name="HighErrorRate",
                       labels=(("alertname", "HighErrorRate"), ("service", "orders")), state="firing",
                       starts_at=1796298417.810911, ends_at=None, at=AT)] == parse_webhook(SENT, at=AT)


def test_a_resolved_alert_keeps_both_times() -> None:
    """Resolved: startsAt and endsAt as epoch seconds (offsets applied, nanoseconds cut to microseconds)."""
    [got] = parse(payload(alert(status="resolved", startsAt="2026-01-02T03:04:05.5+01:00",
                                endsAt="2026-01-02T02:10:00Z")))
    assert (got.state, got.starts_at, got.ends_at) == ("resolved", 1767319445.5, 1767319800.0)


def test_only_version_and_alerts_are_required_at_the_top() -> None:
    """A hand-made sender may leave out what suture does not keep (groupKey, receiver, ...)."""
    assert len(parse({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A"}}]})) == 1


def test_an_empty_notification_has_no_alerts() -> None:
    """alerts: [] is a valid payload with nothing in it."""
    assert parse(payload()) == []


def test_a_missing_fingerprint_is_alertmanagers_own() -> None:
    """Without a fingerprint the key is the one Alertmanager computes for the same labels (seen from 0.25)."""
    no_print = alert()
    del no_print["fingerprint"]
    assert [a.fingerprint for a in parse(payload(no_print))] == ["d874468041706f1c"]


def test_an_empty_fingerprint_is_computed_too() -> None:
    """An empty fingerprint counts as absent."""
    assert [a.fingerprint for a in parse(payload(alert(fingerprint="")))] == ["d874468041706f1c"]


@pytest.mark.parametrize(("expected", "labels"), [
    ("cbf29ce484222325", {}),  # Go's emptyLabelSignature: FNV-1a's offset basis
    ("d874468041706f1c", {"alertname": "HighErrorRate", "service": "orders"}),
    ("d874468041706f1c", {"service": "orders", "alertname": "HighErrorRate"}),
])
def test_fingerprint_is_fnv1a_over_sorted_labels(expected: str, labels: dict[str, str]) -> None:
    """FNV-1a 64 over name, 0xff, value, 0xff for each label in name order, as 16 hex digits."""
    assert expected == fingerprint(tuple(labels.items()))


def test_the_same_alert_twice_in_one_notification_is_one() -> None:
    """Deduplicated by fingerprint; the last occurrence wins."""
    got = parse(payload(alert(status="firing"), alert(name="Other", fingerprint="aa"), alert(status="resolved")))
    assert [(a.fingerprint, a.state) for a in got] == [("aa", "firing"), ("d874468041706f1c", "resolved")]


@pytest.mark.parametrize(("expected", "data"), [
    ('version must be "4", got "3"', payload(version="3")),
    ('version must be "4", got 4', payload(version=4)),
    ('version is missing (Alertmanager sends "4")', {"alerts": []}),
    ("alerts is missing", {"version": "4"}),
    ("alerts must be a list, got an object", payload(alerts={})),
    ("the payload must be an object, got a list", []),
    ("the payload must be an object, got null", None),
    ("status must be firing or resolved, got \"pending\"", payload(status="pending")),
    ("alerts[0] must be an object, got a string", payload("firing")),
    ("alerts[0].status must be firing or resolved, got \"FIRING\"", payload(alert(status="FIRING"))),
    ("alerts[0].status must be firing or resolved, got null", payload(alert(status=None))),
    ("alerts[0].status is missing (firing or resolved)", payload({"labels": {"alertname": "A"}})),
    ("alerts[0].labels is missing", payload({"status": "firing"})),
    ("alerts[0].labels must be an object of strings, got a list", payload(alert(labels=[]))),
    ("alerts[3].labels.alertname is missing", payload(alert(), alert(), alert(), alert(labels={"service": "a"}))),
    ("alerts[0].labels.alertname is empty", payload(alert(labels={"alertname": ""}))),
    ("alerts[0].labels.service must be a string, got a number", payload(alert(labels={"alertname": "A",
                                                                                      "service": 5}))),
    ('alerts[0].labels."a b" must be a string, got null', payload(alert(labels={"alertname": "A", "a b": None}))),
    ("alerts[0].labels has a label with an empty name", payload(alert(labels={"alertname": "A", "": "x"}))),
    ("alerts[0].labels.alertname is not valid text (a NUL or a lone surrogate)",
     payload(alert(labels={"alertname": "A\x00"}))),
    ("alerts[0].annotations must be an object of strings, got a string", payload(alert(annotations="x"))),
    ("alerts[0].annotations.summary must be a string, got a list", payload(alert(annotations={"summary": []}))),
    ('alerts[0].startsAt is not an RFC 3339 time: "yesterday"', payload(alert(startsAt="yesterday"))),
    ('alerts[0].endsAt has no time zone: "2026-01-02T03:04:05"', payload(alert(endsAt="2026-01-02T03:04:05"))),
    ("alerts[0].startsAt must be a string, got a number", payload(alert(startsAt=1767319445))),
    ("alerts[0].fingerprint must be a string, got a number", payload(alert(fingerprint=12))),
    ('alerts[0].fingerprint must be visible ASCII, got "a b"', payload(alert(fingerprint="a b"))),
    ("alerts[0].generatorURL must be a string, got a boolean", payload(alert(generatorURL=True))),
    ("groupLabels must be an object of strings, got a string", payload(groupLabels="x")),
    ("commonLabels.job must be a string, got a number", payload(commonLabels={"job": 1})),
    ("commonAnnotations must be an object of strings, got a list", payload(commonAnnotations=[])),
    ("receiver must be a string, got a number", payload(receiver=1)),
    ("truncatedAlerts must be a whole number >= 0, got -1", payload(truncatedAlerts=-1)),
    ("truncatedAlerts must be a whole number >= 0, got true", payload(truncatedAlerts=True)),
])
def test_a_malformed_payload_is_refused_saying_where(expected: str, data: Any) -> None:
    """Each way a payload can be wrong has its own reason, with the path of the field."""
    assert expected == reason(data)


@pytest.mark.parametrize(("start", "body"), [
    ("not JSON: Expecting value", b""),
    ("not JSON: Expecting property name", b"{"),
    ("not JSON: 'utf-8' codec can't decode", b'{"version": "\xff"}'),
    ("not JSON: NaN is not a JSON number", b'{"version": "4", "alerts": [], "truncatedAlerts": NaN}'),
    ("not JSON: Infinity is not a JSON number", b"[Infinity]"),
    ("not JSON: nested too deeply", b"[" * 100_000 + b"]" * 100_000),
    ("not JSON: Exceeds the limit", b'{"truncatedAlerts": ' + b"9" * 5000 + b"}"),
    ('an object repeats the key "alertname"',
     b'{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A", "alertname": "B"}}]}'),
    ("alerts[0].labels.alertname is not valid text (a NUL or a lone surrogate)",
     b'{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "\\udc36"}}]}'),
])
def test_a_body_that_is_not_json_or_is_ambiguous_says_so(start: str, body: bytes) -> None:
    """Bytes that are not JSON, JSON extensions (NaN), ambiguous objects, deep nesting: refused with the reason."""
    assert reason(body).startswith(start)


@pytest.mark.parametrize(("expected", "data"), [
    ("too many alerts: 1001 (at most 1000 in one notification)", payload(*[alert()] * 1001)),
    (f"alerts[0].labels: too many labels: {MAX_LABELS + 1} (at most {MAX_LABELS})",
     payload(alert(labels={"alertname": "A"} | {f"l{i}": "v" for i in range(MAX_LABELS)}))),
    (f'alerts[0].labels: the name of label "{"n" * 56}... is {MAX_LABEL_NAME + 1} characters long'
     f" (at most {MAX_LABEL_NAME})",
     payload(alert(labels={"alertname": "A", "n" * (MAX_LABEL_NAME + 1): "v"}))),
    (f"alerts[0].labels.service is {MAX_LABEL_VALUE + 1} characters long (at most {MAX_LABEL_VALUE})",
     payload(alert(labels={"alertname": "A", "service": "v" * (MAX_LABEL_VALUE + 1)}))),
    (f"alerts[0].annotations.description is {MAX_ANNOTATION + 1} characters long (at most {MAX_ANNOTATION})",
     payload(alert(annotations={"description": "d" * (MAX_ANNOTATION + 1)}))),
    ("alerts[0].fingerprint is 65 characters long (at most 64)", payload(alert(fingerprint="f" * 65))),
])
def test_every_text_and_count_is_bounded(expected: str, data: Any) -> None:
    """Alerts per notification, labels per alert, label names and values, annotations, fingerprints."""
    assert expected == reason(data)


def test_max_alerts_is_a_parameter() -> None:
    """The bound on alerts is the caller's; at the bound it is accepted."""
    assert len(parse(payload(*[alert(fingerprint=str(i)) for i in range(3)]), max_alerts=3)) == 3
    with pytest.raises(AlertPayloadError, match=r"too many alerts: 3 \(at most 2"):
        parse(payload(*[alert()] * 3), max_alerts=2)


def test_the_error_is_a_suture_error() -> None:
    """AlertPayloadError sits under SutureError, like every error suture raises on purpose."""
    assert issubclass(AlertPayloadError, SutureError)


# -- hostile JSON --

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters() | st.characters(categories=["Cs"]) | st.just("\x00"), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
LABELS = st.dictionaries(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1,
                                 max_size=20), TEXT, max_size=5)


def _survives(body: bytes, max_alerts: int = 1000) -> list[AlertState] | None:
    try:
        return parse_webhook(body, at=AT, max_alerts=max_alerts)
    except AlertPayloadError as exc:
        assert str(exc)  # always a reason
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_refused_or_read(body: bytes) -> None:
    """Any bytes: AlertPayloadError or alerts, never another exception."""
    _survives(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_arbitrary_json_is_refused_with_a_reason(data: Any) -> None:
    """Any JSON value (lone surrogates and NUL in strings too): AlertPayloadError, never another exception."""
    _survives(json.dumps(data).encode())


PATHS = st.lists(st.sampled_from(["alerts", 0, 1, "labels", "alertname", "service", "annotations", "startsAt",
                                  "endsAt", "fingerprint", "status", "version", "commonLabels", "truncatedAlerts"]),
                 min_size=1, max_size=4)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(PATHS, JSON)
def test_a_valid_payload_with_any_part_replaced_is_refused_or_read(path: list[Any], value: Any) -> None:
    """Alertmanager's payload with one field (or a field's part) replaced by hostile JSON: a reason or alerts,
    and what is read is still well formed."""
    data: Any = copy.deepcopy(payload(alert(), alert(name="B", status="resolved", fingerprint="b")))
    node = data
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return
    try:
        node[path[-1]] = value
    except (IndexError, TypeError):
        return
    for got in _survives(json.dumps(data).encode()) or []:
        assert got.name and got.fingerprint and got.state in ("firing", "resolved")
        assert list(got.labels) == sorted(got.labels) and got.label("alertname") == got.name


@settings(max_examples=200)
@given(st.lists(st.tuples(LABELS, st.sampled_from(["firing", "resolved"])), max_size=8))
def test_well_formed_alerts_are_all_read_once_each(alerts: list[tuple[dict[str, str], str]]) -> None:
    """Alerts without fingerprints: one AlertState per distinct label set, its fingerprint that of its labels."""
    given_alerts = [{"status": state, "labels": labels | {"alertname": "A"}} for labels, state in alerts]
    got = parse(payload(*given_alerts))
    distinct = {fingerprint(tuple(a["labels"].items())) for a in given_alerts}
    assert distinct == {a.fingerprint for a in got} and len(got) == len(distinct)
    for a in got:
        assert a.fingerprint == fingerprint(a.labels)


@given(LABELS)
def test_the_fingerprint_ignores_label_order(labels: dict[str, str]) -> None:
    """The same labels in any order: one fingerprint, 16 hex digits."""
    forward, backward = fingerprint(tuple(labels.items())), fingerprint(tuple(reversed(labels.items())))
    assert forward == backward and len(forward) == 16 and int(forward, 16) >= 0
