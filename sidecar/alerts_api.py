"""Alertmanager's webhook, received: ``POST /api/alerts/alertmanager``.

    alerts:
      alertmanager: { token_env: SUTURE_ALERT_TOKEN, max_bytes: 1048576 }

In order, before the body is read (the route's ``max_body`` is :meth:`AlertsApi.admit`, which the
transport asks from the headers alone): a request without an ``Authorization`` header is 401 (as
on every route that needs a token); without ``alerts.alertmanager`` in the config it is 404 naming
the section; when the variable ``token_env`` names was unset at start-up every request is 503 (the
receiver never runs unauthenticated); a token other than that one (compared in constant time) is
401. Then a body over ``max_bytes`` is 413 from its Content-Length, unread (``max_bytes`` is this
route's body limit, above or below the API's 256 KiB); one that is not Alertmanager's payload
is 400 with :func:`~suture.engine.alerts.parse_webhook`'s reason, and the alerts go to the core as one
:class:`~.observations.Alerts` observation: queued, not waited for (the answer is 200 once queued;
503 with Retry-After if the core's queue stays full, which Alertmanager retries).
"""

from __future__ import annotations

import hmac
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from suture.engine import alerts as am
from suture.engine.alerts import parse_webhook
from suture.engine.errors import AlertPayloadError

from .observations import Alerts
from .routes import ApiError, BodyLimit, Request, Route

if TYPE_CHECKING:
    from suture.engine.config_scrape import AlertsConfig

    from .public import PublicSidecar

PATH = "/api/alerts/alertmanager"
NO_RECEIVER = ("this sidecar receives no alerts: its config has no alerts.alertmanager section "
               "(see docs/alerts.md)")
MISSING = "missing bearer token (Authorization: Bearer <the token of alerts.alertmanager.token_env>)"
QUEUE_WAIT = 2.0  # seconds the answer may wait for room on the core's queue

INT = {"type": "integer", "minimum": 0}


def _text(most: int, least: int = 0) -> dict[str, Any]:
    """A string as the parser takes it: bounded, without NUL (lone surrogates are refused too)."""
    return {"type": "string", "minLength": least, "maxLength": most, "pattern": "^[^\\u0000]*$"}


def _strings(most: int, value_length: int, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "maxProperties": most, "propertyNames": _text(am.MAX_LABEL_NAME, 1),
            "additionalProperties": _text(value_length), "properties": properties}


LABELS = _strings(am.MAX_LABELS, am.MAX_LABEL_VALUE)
ANNOTATIONS = _strings(am.MAX_ANNOTATIONS, am.MAX_ANNOTATION)
TIME = {"type": "string", "format": "date-time", "maxLength": 64,
        "description": "RFC 3339; Go's zero time 0001-01-01T00:00:00Z means unset"}
ALERT = {
    "type": "object", "required": ["status", "labels"],
    "properties": {
        "status": {"enum": ["firing", "resolved"]},
        "labels": _strings(am.MAX_LABELS, am.MAX_LABEL_VALUE, alertname=_text(am.MAX_LABEL_VALUE, 1))
        | {"required": ["alertname"]},
        "annotations": ANNOTATIONS, "startsAt": TIME, "endsAt": TIME, "generatorURL": _text(am.MAX_TEXT),
        "fingerprint": {"type": "string", "pattern": "^[!-~]{0,64}$",
                        "description": "Alertmanager's hash of the labels; computed the same way when absent"},
    },
}
PAYLOAD = {
    "type": "object", "required": ["version", "alerts"],
    "description": "Alertmanager's webhook_config payload, version 4.",
    "properties": {
        "version": {"const": "4"}, "groupKey": _text(am.MAX_TEXT), "truncatedAlerts": INT,
        "status": {"enum": ["firing", "resolved"]}, "receiver": _text(am.MAX_TEXT),
        "groupLabels": LABELS, "commonLabels": LABELS, "commonAnnotations": ANNOTATIONS,
        "externalURL": _text(am.MAX_TEXT), "alerts": {"type": "array", "maxItems": 1000, "items": ALERT},
    },
}
RECEIVED = {"type": "object", "required": ["received", "firing", "resolved"],
            "properties": {"received": INT, "firing": INT, "resolved": INT}}


class AlertsApi:
    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar

    def routes(self) -> list[Route]:
        return [Route("POST", PATH, self.alertmanager,
                      "Alertmanager's webhook (version 4), with the token of alerts.alertmanager.token_env: the"
                      " alerts become alert facts keyed by fingerprint (resolved ones retract). 404 without"
                      " alerts.alertmanager; 503 when its token is unset or the core is busy; 413 over max_bytes.",
                      own_token=True, wants_request=True, body=PAYLOAD, response=RECEIVED, max_body=self.admit)]

    def admit(self, headers: dict[str, str]) -> BodyLimit:
        """Everything before the body, from the headers: the token (401, 404, 503), then how much body to take."""
        given = headers.get("authorization", "")
        if not given:
            raise ApiError(HTTPStatus.UNAUTHORIZED, MISSING, {"WWW-Authenticate": "Bearer"})
        config = self.sidecar.config.alertmanager
        if config is None:
            raise ApiError(HTTPStatus.NOT_FOUND, NO_RECEIVER)
        _authorize(config, given)
        return BodyLimit(config.max_bytes, "alerts.alertmanager.max_bytes")

    def alertmanager(self, request: Request) -> dict[str, Any]:
        limit = self.admit(request.headers)  # again: the handler may be called without the transport (App.dispatch)
        if len(request.body) > limit.most:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, limit.refusal(len(request.body)))
        try:
            alerts = parse_webhook(request.body, at=self.sidecar.clock())
        except AlertPayloadError as exc:
            raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from None
        if alerts and not self.sidecar.offer(Alerts(tuple(alerts)), timeout=QUEUE_WAIT):
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "the sidecar is busy: its core's queue stayed full for"
                           f" {QUEUE_WAIT:g} s; the alerts were not taken", {"Retry-After": "5"})
        firing = sum(a.state == "firing" for a in alerts)
        return {"received": len(alerts), "firing": firing, "resolved": len(alerts) - firing}


def _authorize(config: AlertsConfig, given: str) -> None:
    """The bearer token, compared in constant time; an unset token refuses everything (never open)."""
    if not config.token:
        raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE,
                       f"the alert receiver has no token: ${config.token_env} (alerts.alertmanager.token_env) was not"
                       " set when the sidecar started, so every request is refused")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip(" ").encode(), config.token.encode()):
        raise ApiError(HTTPStatus.UNAUTHORIZED, "wrong bearer token (alerts.alertmanager.token_env)",
                       {"WWW-Authenticate": "Bearer"})
