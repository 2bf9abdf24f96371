"""The group's tables in PostgreSQL: numbered migrations, applied by whichever sidecar connects first.

    fleet_schema_version  version, name, applied_at (one row per migration applied)
    fleet_fixes           every fix of every sidecar: PRIMARY KEY (grp, sidecar, id)
    fleet_steps           every journal step: PRIMARY KEY (grp, sidecar, fix_id, seq), with its fence
    fleet_outcomes        (view) successes and failures per (grp, playbook_id), from fleet_fixes
    fleet_leases          one row per (grp, playbook_id, key): holder, fencing token, expiry
    fleet_fence           (sequence) where every fencing token comes from
    fleet_suspensions     a playbook suspended for a whole group until a person resumes it
    fleet_canaries        the replicas trying a playbook version first, and what became of their fixes
    fleet_starts          every fix the group let start (the group-wide hourly cap counts these)
    fleet_replicas        one row per sidecar of a group: last seen, version, playbooks loaded, fixes in flight

Writes are idempotent by key: a fix shipped twice is one row, a step shipped twice is one row.
``migrate`` takes a transaction-scoped advisory lock first, so sidecars starting together
apply each migration once (the others wait, then find it applied). A migration is never
edited once released; a database newer than this suture is refused (fail closed).
"""

from __future__ import annotations

from suture.engine.errors import FleetUnavailable
from suture.engine.status import FAILURE, SUCCESS, sql_list

from .fleet_pg import FleetConnection

SCHEMA_LOCK = 0x7375747572650001  # pg_advisory_xact_lock key: "suture" + 1 (any constant both sides agree on)

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "fixes, steps, outcomes, leases, suspensions",
        f"""
        CREATE TABLE fleet_fixes (
            grp text NOT NULL,
            sidecar text NOT NULL,
            id text NOT NULL,
            playbook_id text NOT NULL,
            playbook_version text,
            group_key text NOT NULL DEFAULT '',
            status text NOT NULL,
            decision text NOT NULL,
            reason text,
            mode text,
            started_at timestamptz NOT NULL,
            finished_at timestamptz,
            base_confidence double precision,
            adjusted_confidence double precision,
            threshold double precision,
            model text,
            successes integer,
            failures integer,
            fleet_successes integer,
            fleet_failures integer,
            backup_id text,
            errors_before integer,
            errors_after integer,
            fix_types text,
            changes jsonb,
            detail text,
            approved_by text,
            proposal_id text,
            shipped_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (grp, sidecar, id)
        );
        CREATE INDEX fleet_fixes_by_playbook ON fleet_fixes (grp, playbook_id, decision);
        CREATE INDEX fleet_fixes_by_start ON fleet_fixes (grp, started_at);
        CREATE TABLE fleet_steps (
            grp text NOT NULL,
            sidecar text NOT NULL,
            fix_id text NOT NULL,
            seq integer NOT NULL,
            step text NOT NULL,
            happened_at timestamptz NOT NULL,
            detail jsonb,
            fence bigint,
            PRIMARY KEY (grp, sidecar, fix_id, seq)
        );
        CREATE VIEW fleet_outcomes AS
            SELECT grp, playbook_id,
                   count(*) FILTER (WHERE status IN {sql_list(SUCCESS)}) AS successes,
                   count(*) FILTER (WHERE status IN {sql_list(FAILURE)}) AS failures,
                   count(DISTINCT sidecar) AS sidecars,
                   max(finished_at) AS last_finished_at
            FROM fleet_fixes WHERE decision = 'apply' GROUP BY grp, playbook_id;
        CREATE SEQUENCE fleet_fence AS bigint;
        CREATE TABLE fleet_leases (
            grp text NOT NULL,
            playbook_id text NOT NULL,
            key text NOT NULL,
            holder text,
            token bigint NOT NULL,
            acquired_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (grp, playbook_id, key)
        );
        CREATE TABLE fleet_suspensions (
            id bigserial PRIMARY KEY,
            grp text NOT NULL,
            playbook_id text NOT NULL,
            suspended_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            suspended_by text NOT NULL,
            reason text NOT NULL,
            cause_fix_id text,
            resumed_at timestamptz,
            resumed_by text
        );
        CREATE UNIQUE INDEX fleet_suspensions_one_active ON fleet_suspensions (grp, playbook_id)
            WHERE resumed_at IS NULL;
        """,
    ),
    (
        2,
        "canaries, starts, replicas",
        """
        CREATE TABLE fleet_canaries (
            grp text NOT NULL,
            playbook_id text NOT NULL,
            playbook_version text NOT NULL,
            fix_id text NOT NULL,
            sidecar text NOT NULL,
            state text NOT NULL CHECK (state IN ('running', 'succeeded', 'failed', 'abandoned', 'resumed')),
            detail text NOT NULL DEFAULT '',
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            expires_at timestamptz NOT NULL,
            ended_at timestamptz,
            PRIMARY KEY (grp, playbook_id, fix_id)
        );
        CREATE INDEX fleet_canaries_by_version ON fleet_canaries (grp, playbook_id, playbook_version, state);
        CREATE TABLE fleet_starts (
            grp text NOT NULL,
            playbook_id text NOT NULL,
            fix_id text NOT NULL,
            sidecar text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (grp, sidecar, fix_id)
        );
        CREATE INDEX fleet_starts_by_time ON fleet_starts (grp, started_at);
        CREATE TABLE fleet_replicas (
            grp text NOT NULL,
            sidecar text NOT NULL,
            suture_version text NOT NULL DEFAULT '',
            playbooks integer NOT NULL DEFAULT 0,
            in_flight integer NOT NULL DEFAULT 0,
            started_at timestamptz,
            seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (grp, sidecar)
        );
        """,
    ),
)
LATEST = MIGRATIONS[-1][0]


def schema_version(fleet: FleetConnection) -> int:
    """The newest migration the group's database holds (0 for an empty one)."""
    with fleet.transaction() as pg:
        exists = pg.execute("SELECT to_regclass('fleet_schema_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = pg.execute("SELECT coalesce(max(version), 0) FROM fleet_schema_version").fetchone()
        return int(row[0]) if row else 0


def migrate(fleet: FleetConnection) -> list[int]:
    """Apply every migration the database lacks, in one transaction under the schema lock; return those applied."""
    applied: list[int] = []
    with fleet.transaction() as pg:
        pg.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEMA_LOCK])
        pg.execute(
            """CREATE TABLE IF NOT EXISTS fleet_schema_version (
                   version integer PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"""
        )
        row = pg.execute("SELECT coalesce(max(version), 0) FROM fleet_schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > LATEST:
            raise FleetUnavailable(
                f"the fleet database has schema version {current}, newer than this suture knows ({LATEST}): upgrade it"
            )
        for version, name, sql in MIGRATIONS:
            if version > current:
                pg.execute(sql)
                pg.execute("INSERT INTO fleet_schema_version (version, name) VALUES (%s, %s)", [version, name])
                applied.append(version)
    return applied
