"""Alerts from Alertmanager as values: what the webhook receiver hands the core.

An :class:`AlertState` is one alert of a webhook notification (version 4), keyed by its
``fingerprint`` (Alertmanager's hash of the label set): the same alert notified again is the
same key (deduplicated), and ``resolved`` retracts it. :func:`parse_webhook` reads one notification's
body into them, or says precisely why it cannot (:class:`AlertPayloadError`); it is pure and bounded
(alerts per notification, labels per alert, the length of every text).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from .errors import AlertPayloadError

AlertLabels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertState:
    fingerprint: str
    name: str  # the alertname label
    labels: AlertLabels
    state: Literal["firing", "resolved"]
    starts_at: float | None  # epoch seconds, as Alertmanager says (None: absent or unreadable)
    ends_at: float | None
    at: float  # when suture received it

    def label(self, name: str) -> str | None:
        return next((v for k, v in self.labels if k == name), None)


MAX_FIRING = 10_000  # firing alerts kept by the core (the oldest is forgotten past it)


def keep_firing(firing: dict[str, AlertState], alert: AlertState) -> bool:
    """Keep ``alert`` in ``firing`` (by fingerprint) while it fires, drop it once resolved; True if its state
    changed (a first firing, or a resolution of one kept): what the core tells as an ``alert`` event."""
    before = firing.pop(alert.fingerprint, None)
    if alert.state == "firing":
        firing[alert.fingerprint] = alert
        while len(firing) > MAX_FIRING:
            firing.pop(next(iter(firing)))
    return ("firing" if before else "resolved") != alert.state


# -- the webhook's payload (Alertmanager's webhook_config, version 4) --

MAX_LABELS = 64  # per alert; Alertmanager sets no limit, but a rule with more is not one a playbook matches on
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 4096
MAX_ANNOTATIONS = 64
MAX_ANNOTATION = 64 * 1024  # descriptions and runbook texts may be long; they are checked, not kept
MAX_TEXT = 64 * 1024  # receiver, groupKey, externalURL, generatorURL
MAX_FINGERPRINT = 64  # Alertmanager's is 16 hex digits
UNSET = 1  # Go's zero time (0001-01-01T00:00:00Z) is year 1: "not set"
FNV_OFFSET, FNV_PRIME, SEPARATOR = 0xCBF29CE484222325, 0x100000001B3, 0xFF
FINGERPRINT = re.compile(r"[\x21-\x7e]+")  # visible ASCII
KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a label name shown bare in a message; others in quotes
SURROGATE = re.compile("[\ud800-\udfff]")


def parse_webhook(body: bytes, *, at: float, max_alerts: int = 1000) -> list[AlertState]:
    """The alerts of one Alertmanager webhook notification, or :class:`AlertPayloadError` with the reason.

    The payload (Alertmanager's ``webhook_config``) is an object with ``version`` ``"4"``, ``groupKey``,
    ``truncatedAlerts``, ``status``, ``receiver``, ``groupLabels``, ``commonLabels``,
    ``commonAnnotations``, ``externalURL`` and ``alerts``: each alert has ``status`` (firing or
    resolved), ``labels`` (``alertname`` required), ``annotations``, ``startsAt``, ``endsAt``,
    ``generatorURL`` and ``fingerprint``. ``version`` and ``alerts`` are required, an alert's
    ``status`` and ``labels`` too; every other field is checked when present (type and size) and
    not kept. Times are RFC 3339 with a zone; Go's zero time (``0001-01-01T00:00:00Z``) means unset
    (None). JSON objects may not repeat a key; NaN and Infinity, NUL and lone surrogates are refused.

    Without a ``fingerprint`` (a sender other than Alertmanager), one is computed from the label
    set exactly as Alertmanager computes its own (FNV-1a 64 over the labels sorted by name, each
    name and value followed by byte 0xff, as 16 hex digits), so the same alert gets the same key
    from either. An alert repeated in one notification is kept once (its last occurrence).
    """
    try:
        data = json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except AlertPayloadError:
        raise
    except RecursionError:
        raise AlertPayloadError("not JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertPayloadError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AlertPayloadError(f"the payload must be an object, got {_kind(data)}")
    if "version" not in data:
        raise AlertPayloadError('version is missing (Alertmanager sends "4")', path="version")
    if data["version"] != "4":
        raise AlertPayloadError(f'version must be "4", got {_shown(data["version"])}', path="version")
    for key in ("groupKey", "receiver", "externalURL"):
        _text(data, key, key, MAX_TEXT)
    _status(data, "status")
    for key in ("groupLabels", "commonLabels"):
        _labels(data.get(key, {}), key)
    _annotations(data.get("commonAnnotations", {}), "commonAnnotations")
    truncated = data.get("truncatedAlerts", 0)
    whole = isinstance(truncated, int) or (isinstance(truncated, float) and truncated.is_integer())
    if isinstance(truncated, bool) or not whole or truncated < 0:
        raise AlertPayloadError(f"truncatedAlerts must be a whole number >= 0, got {_shown(truncated)}",
                                path="truncatedAlerts")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise AlertPayloadError("alerts is missing" if alerts is None else f"alerts must be a list, got {_kind(alerts)}",
                                path="alerts")
    if len(alerts) > max_alerts:
        raise AlertPayloadError(f"too many alerts: {len(alerts)} (at most {max_alerts} in one notification)",
                                path="alerts")
    out: dict[str, AlertState] = {}
    for i, raw in enumerate(alerts):
        alert = _alert(raw, f"alerts[{i}]", at)
        out.pop(alert.fingerprint, None)  # the last occurrence wins, in its own place
        out[alert.fingerprint] = alert
    return list(out.values())


def fingerprint(labels: AlertLabels) -> str:
    """Alertmanager's fingerprint of a label set (Prometheus' ``LabelSet.Fingerprint``): FNV-1a 64, hex."""
    h = FNV_OFFSET
    for name, value in sorted(labels):
        for part in (name, value):
            for byte in part.encode():
                h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ SEPARATOR) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _alert(raw: Any, where: str, at: float) -> AlertState:
    if not isinstance(raw, dict):
        raise AlertPayloadError(f"{where} must be an object, got {_kind(raw)}", path=where)
    state = _status(raw, "status", where)
    if state is None:
        raise AlertPayloadError(f"{where}.status is missing (firing or resolved)", path=f"{where}.status")
    if "labels" not in raw:
        raise AlertPayloadError(f"{where}.labels is missing", path=f"{where}.labels")
    labels = _labels(raw["labels"], f"{where}.labels")
    name = dict(labels).get("alertname")
    if name is None:
        raise AlertPayloadError(f"{where}.labels.alertname is missing", path=f"{where}.labels.alertname")
    if not name:
        raise AlertPayloadError(f"{where}.labels.alertname is empty", path=f"{where}.labels.alertname")
    _annotations(raw.get("annotations", {}), f"{where}.annotations")
    _text(raw, "generatorURL", f"{where}.generatorURL", MAX_TEXT)
    given = _text(raw, "fingerprint", f"{where}.fingerprint", MAX_FINGERPRINT)
    if given and not FINGERPRINT.fullmatch(given):
        raise AlertPayloadError(f"{where}.fingerprint must be visible ASCII, got {_shown(given)}",
                                path=f"{where}.fingerprint")
    return AlertState(fingerprint=given or fingerprint(labels), name=name, labels=labels, state=state,
                      starts_at=_time(raw, "startsAt", where), ends_at=_time(raw, "endsAt", where), at=at)


def _status(data: dict[str, Any], key: str, where: str = "") -> Literal["firing", "resolved"] | None:
    value = data.get(key)
    if value is None and key not in data:
        return None
    if value == "firing" or value == "resolved":
        return cast(Literal["firing", "resolved"], value)
    raise AlertPayloadError(f"{_at(where, key)} must be firing or resolved, got {_shown(value)}", path=_at(where, key))


def _labels(raw: Any, where: str) -> AlertLabels:
    return tuple(sorted(_strings(raw, where, "label", MAX_LABELS, MAX_LABEL_VALUE).items()))


def _annotations(raw: Any, where: str) -> None:
    _strings(raw, where, "annotation", MAX_ANNOTATIONS, MAX_ANNOTATION)


def _strings(raw: Any, where: str, what: str, most: int, limit: int) -> dict[str, str]:
    """An object of at most ``most`` strings (labels, annotations), names and values checked."""
    if not isinstance(raw, dict):
        raise AlertPayloadError(f"{where} must be an object of strings, got {_kind(raw)}", path=where)
    if len(raw) > most:
        raise AlertPayloadError(f"{where}: too many {what}s: {len(raw)} (at most {most})", path=where)
    for name, value in raw.items():
        if not name:
            raise AlertPayloadError(f"{where} has {'an' if what[0] in 'aeiou' else 'a'} {what} with an empty name",
                                    path=where)
        _check(name, f"{where}: the name of {what} {_key(name)}", MAX_LABEL_NAME, path=f"{where}.{_key(name)}")
        _check(value, f"{where}.{_key(name)}", limit)
    return raw


def _text(data: dict[str, Any], key: str, where: str, limit: int) -> str | None:
    if key not in data:
        return None
    value = data[key]
    _check(value, where, limit)
    return cast(str, value)


def _check(value: Any, where: str, limit: int, path: str | None = None) -> None:
    """A string of at most ``limit`` characters; ``where`` begins the message, ``path`` (default: ``where``) locates it."""
    at = where if path is None else path
    if not isinstance(value, str):
        raise AlertPayloadError(f"{where} must be a string, got {_kind(value)}", path=at)
    if len(value) > limit:
        raise AlertPayloadError(f"{where} is {len(value)} characters long (at most {limit})", path=at)
    if "\x00" in value or SURROGATE.search(value):
        raise AlertPayloadError(f"{where} is not valid text (a NUL or a lone surrogate)", path=at)


def _time(raw: dict[str, Any], key: str, where: str) -> float | None:
    value = _text(raw, key, f"{where}.{key}", 64)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise AlertPayloadError(f"{where}.{key} is not an RFC 3339 time: {_shown(value)}", path=f"{where}.{key}") from None
    if moment.tzinfo is None:
        raise AlertPayloadError(f"{where}.{key} has no time zone: {_shown(value)}", path=f"{where}.{key}")
    if moment.year == UNSET:
        return None
    return moment.timestamp()


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise AlertPayloadError(f"an object repeats the key {_shown(key)}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise AlertPayloadError(f"not JSON: {name} is not a JSON number")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _shown(value: Any) -> str:
    """A value for a message: JSON, cut to 60 characters."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(name: str) -> str:
    """A key in a path: bare if it looks like a label name, else quoted (and cut like a value)."""
    return name if KEY.fullmatch(name) and len(name) <= 60 else _shown(name)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
