"""What a notification says, rendered at delivery from the journal (the outbox row holds fix id and event).

For an Apprise channel: the incident report's title and summary (:mod:`suture.engine.report`),
a link to the dashboard and the command that prints the whole report; the report itself, as
Markdown, is the attachment where the service takes one. For a suspension: the playbook, the
reason, how to resume. For notify.webhook: one JSON object (docs/notifications.md, "The
webhook's body").

Only facts of the journal go in: the fix row, its steps as the report reads them, the row's
own body (status, detail, reason as the store queued them). Nothing is read from the
environment or from any file but the history (and the backup store's images, for the diff).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from suture.engine.reads import epoch
from suture.engine.store import Store

from .events import clean


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    title: str
    body: str  # plain text: Apprise escapes it for HTML targets
    report: str | None  # the Markdown report, attached where the service allows


def facts_of(row: dict[str, Any]) -> dict[str, Any]:
    facts = row.get("body")
    return json.loads(facts) if isinstance(facts, str) else dict(facts or {})


def webhook_body(row: dict[str, Any], *, sidecar: str, dashboard_url: str | None) -> dict[str, Any]:
    """notify.webhook's JSON body for one outbox row: the journal's facts, no report needed."""
    facts = facts_of(row)
    event, fix_id, playbook_id = str(row["event"]), row.get("fix_id"), str(row.get("playbook_id") or "")
    body: dict[str, Any] = {
        "source": "suture", "sidecar": sidecar, "kind": event, "fix_id": fix_id, "playbook_id": playbook_id,
        "at": epoch(row["created_at"]), "dashboard_url": _link(dashboard_url),
    }
    if event == "suspended":
        reason = str(facts.get("reason", ""))
        body.update(reason=reason, message=plain(f"{playbook_id}: suspended: {reason}", 2000))
    else:
        detail = str(facts.get("detail", ""))
        body.update(status=str(facts.get("status", event)), detail=detail,
                    message=plain(f"{fix_id} ({playbook_id}): {detail}", 2000))
    return body


def compose(store: Store, row: dict[str, Any], *, dashboard_url: str | None, backups: Any = None) -> Message:
    """The message of one outbox row for an Apprise channel (read through ``store``, the worker's own cursor)."""
    from suture.engine.report import build_report, render_markdown

    event, fix_id, playbook_id = str(row["event"]), row.get("fix_id"), str(row.get("playbook_id") or "")
    link = _link(dashboard_url)
    if event == "suspended":
        title = plain(f"suture: {playbook_id} suspended", 200)
        lines = [plain(f"{playbook_id}: suspended: {facts_of(row).get('reason', '')}", 2000),
                 f"It acts again after `suture resume {playbook_id}`."]
        report = None
    else:
        built = build_report(store, str(fix_id), backups)
        title = built.title()
        lines = [built.summary(), f"The whole report: `suture report {fix_id}`."]
        report = render_markdown(built)
    if link:
        lines.append(f"Dashboard: {link}")
    return Message(title=title, body="\n\n".join(lines), report=report)


def plain(text: str, most: int) -> str:
    """One line of text from the journal: control characters escaped, newlines as spaces, at most ``most`` long."""
    line = clean(" ".join(text.split()))
    return line if len(line) <= most else line[: most - 1] + "…"


def _link(dashboard_url: str | None) -> str | None:
    return dashboard_url.rstrip("/") + "/" if dashboard_url else None
