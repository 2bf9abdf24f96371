"""Every error suture raises on purpose derives from :class:`SutureError`.

    SutureError
     ├── DocumentError     a playbook or suture.yaml is not valid; carries Problems
     │                     (file, line, column, YAML path, message)
     ├── RulesError        durable_rules refused a ruleset or a fact
     ├── ActionError       an action cannot be planned or carried out
     │    ├── PathRefused  a path outside allowed_paths, absolute, '..', or a link out
     │    ├── EditError    the value to change is not there or is not a number
     │    ├── AtBound      the value is already at its min/max: no fix is possible
     │    └── Conflict     a file no longer holds what suture expects
     ├── BackupError       a backup cannot be written, read or verified
     ├── StoreError        the DuckDB history cannot be opened, migrated or written
     ├── AlertPayloadError a webhook body is not Alertmanager's payload (version 4); carries
     │                     the JSON path of what is wrong (``alerts[0].labels.alertname``)
     └── FleetUnavailable  the fleet's PostgreSQL cannot be reached or refused a statement:
                           fleet decisions fail closed (propose, never apply)

Errors that one module raises and its caller catches are declared beside it, under
SutureError too (``engine.sql.SqlRefused``, ``engine.undo.RollbackIncomplete``,
``sidecar.operations.OperationError``, ...).

Third-party errors (jsonschema, PyYAML, durable_rules, DuckDB, psycopg) are mapped to
these at the one place that calls the library, with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with a document, located as precisely as we can."""

    file: str
    line: int  # 1-based; 0 when the problem concerns the whole file
    column: int  # 1-based; 0 when unknown
    path: str  # YAML path such as ``when.all[0].log.pattern``; "" for the root
    message: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        at = f" (at {self.path})" if self.path else ""
        return f"{where}: {self.message}{at}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class SutureError(Exception):
    """Root of suture's own errors."""


class DocumentError(SutureError):
    """A document (playbook or config) failed to load; ``problems`` says where."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render() for p in self.problems))


class RulesError(SutureError):
    """durable_rules refused a ruleset definition or a fact."""


class ActionError(SutureError):
    """An action cannot be planned or carried out."""


class PathRefused(ActionError):
    """A target path that suture must not write."""


class EditError(ActionError):
    """The value an edit targets is missing or is not what the action needs."""


class AtBound(ActionError):
    """The value is already at the bound the action moves it towards."""


class Conflict(ActionError):
    """A file changed under suture's feet; a person must decide."""


class BackupError(SutureError):
    """A backup cannot be written, read or verified."""


class StoreError(SutureError):
    """The DuckDB history cannot be opened, migrated, queried or written."""


class AlertPayloadError(SutureError):
    """A webhook body that is not Alertmanager's payload (version 4). The message says where and why, as the
    receiver answers it (400); ``path`` is the where alone, a JSON path such as ``alerts[0].labels.alertname``
    ("" when it concerns the body as a whole: not JSON, not an object, a key repeated somewhere)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class FleetUnavailable(SutureError):
    """The fleet's PostgreSQL is down, unreachable, too slow or refused a statement (fail closed)."""
