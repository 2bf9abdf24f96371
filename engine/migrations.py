"""The history's schema: numbered migrations, applied in order when the file is opened for writing.

``schema_version`` records each one applied (version, name, when). A migration is never edited
once released: a change to the schema is a new one, so every file reaches the same schema.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from .errors import StoreError

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "fixes and their journal",
        """
        CREATE TABLE fixes (
            id VARCHAR PRIMARY KEY,
            playbook_id VARCHAR NOT NULL,
            playbook_version VARCHAR,
            group_key VARCHAR NOT NULL DEFAULT '',
            status VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,
            reason VARCHAR,
            mode VARCHAR,
            started_at TIMESTAMP NOT NULL,
            finished_at TIMESTAMP,
            base_confidence DOUBLE,
            adjusted_confidence DOUBLE,
            threshold DOUBLE,
            model VARCHAR,
            successes INTEGER,
            failures INTEGER,
            fleet_successes INTEGER,
            fleet_failures INTEGER,
            backup_id VARCHAR,
            errors_before INTEGER,
            errors_after INTEGER,
            fix_types VARCHAR,
            changes JSON,
            detail VARCHAR,
            approved_by VARCHAR,
            proposal_id VARCHAR
        );
        CREATE TABLE fix_steps (
            fix_id VARCHAR NOT NULL,
            seq INTEGER NOT NULL,
            step VARCHAR NOT NULL,
            happened_at TIMESTAMP NOT NULL,
            detail JSON
        );
        """,
    ),
    (
        2,
        "suspensions",
        """
        CREATE TABLE suspensions (
            playbook_id VARCHAR NOT NULL,
            suspended_at TIMESTAMP NOT NULL,
            reason VARCHAR NOT NULL,
            resumed_at TIMESTAMP,
            resumed_by VARCHAR
        );
        """,
    ),
    (
        3,
        "validations, backups, proposals",
        """
        CREATE TABLE validations (
            fix_id VARCHAR NOT NULL,
            opened_at TIMESTAMP NOT NULL,
            judged_at TIMESTAMP NOT NULL,
            verdict VARCHAR NOT NULL,
            reason VARCHAR,
            errors_after INTEGER,
            measured JSON
        );
        CREATE TABLE backups (
            id VARCHAR NOT NULL,
            fix_id VARCHAR NOT NULL,
            playbook_id VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL,
            files JSON NOT NULL
        );
        CREATE VIEW proposals AS
            SELECT p.id, p.playbook_id, p.group_key, p.started_at AS proposed_at, p.adjusted_confidence,
                   p.threshold, p.reason, p.changes, a.id AS approved_fix_id, a.approved_by, a.status AS approved_status
            FROM fixes p LEFT JOIN fixes a ON a.proposal_id = p.id
            WHERE p.status = 'proposed';
        """,
    ),
    (
        4,
        "notifications: the durable outbox",
        """
        CREATE SEQUENCE notifications_id;
        CREATE TABLE notifications (
            id BIGINT PRIMARY KEY DEFAULT nextval('notifications_id'),
            fix_id VARCHAR,
            playbook_id VARCHAR,
            event VARCHAR NOT NULL,
            channel VARCHAR NOT NULL,
            target VARCHAR NOT NULL,
            state VARCHAR NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at TIMESTAMP NOT NULL,
            last_error VARCHAR,
            created_at TIMESTAMP NOT NULL,
            sent_at TIMESTAMP,
            body JSON,
            UNIQUE (fix_id, event, channel)
        );
        """,
    ),
)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The newest migration applied to the file (0 for a new one)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()
    if not exists or not exists[0]:
        return 0
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(con: duckdb.DuckDBPyConnection, path: Path | None) -> list[int]:
    """Apply every migration newer than the file, each in its own transaction; return the versions applied."""
    applied = []
    try:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER, name VARCHAR, applied_at TIMESTAMP)")
        current = schema_version(con)
        for version, name, sql in MIGRATIONS:
            if version <= current:
                continue
            con.execute("BEGIN")
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, ?, ?)", [version, name, datetime.now(UTC).replace(tzinfo=None)])
            con.execute("COMMIT")
            applied.append(version)
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise StoreError(f"migrating {path}: {exc}") from exc
    return applied
