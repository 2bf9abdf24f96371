"""``GET /api/fixes/{id}/report``: a fix's incident report, built on the core (which owns the store).

:func:`report_json` is :func:`engine.report.build_report` over the history (and the backup store, for
the diffs) as :meth:`Report.as_json`, with ``markdown``, ``title`` and ``summary`` beside it; ``suture
report`` (:mod:`.report_command`) prints the same. docs/reports.md describes the format.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from suture.engine.report import Images, UnknownFix, build_report, render_markdown
from suture.engine.store import Store

from . import operations as ops
from .routes import Route

if TYPE_CHECKING:
    from .public import PublicSidecar

S, NS = {"type": "string"}, {"type": ["string", "null"]}
REPORT = {"type": "object", "required": ["fix_id", "playbook_id", "status", "final", "started_at", "markdown",
                                         "title", "summary", "seen", "decided", "changes", "steps", "next"],
          "properties": {"fix_id": S, "playbook_id": S, "status": S, "final": {"type": "boolean"}, "started_at": S,
                         "finished_at": NS, "markdown": S, "title": S, "summary": S,
                         "seen": {"type": "object"}, "decided": {"type": "object"},
                         "changes": {"type": "array"}, "diffs": {"type": "array"}, "effects": {"type": "array"},
                         "validation": {"type": ["object", "null"]}, "steps": {"type": "array"},
                         "next": {"type": "array"}, "seconds": {"type": ["number", "null"]}}}


def report_json(store: Store, fix_id: str, backups: Images | None) -> dict[str, Any]:
    """The report of ``fix_id`` as the API and ``--format json`` give it."""
    report = build_report(store, fix_id, backups)
    return report.as_json() | {"markdown": render_markdown(report), "title": report.title(),
                               "summary": report.summary()}


class ReportApi:
    def __init__(self, sidecar: PublicSidecar) -> None:
        self.sidecar = sidecar

    def routes(self) -> list[Route]:
        return [Route("GET", "/api/fixes/{fix_id}/report", self.fix_report,
                      "The fix's incident report from its journal: what was seen, why it was decided, what changed "
                      "(a diff per file), effects, the validation window, each step's time, what to do next; "
                      "as JSON, with the Markdown in `markdown`.", response=REPORT)]

    def fix_report(self, fix_id: str) -> dict[str, Any]:
        sc = self.sidecar

        def build() -> dict[str, Any]:
            store = ops.store_of(sc)
            try:
                return report_json(store, fix_id, sc.executor.backups if sc.executor is not None else None)
            except UnknownFix as exc:
                raise ops.OperationError(HTTPStatus.NOT_FOUND, str(exc)) from exc

        return dict(sc.call(build))
