"""What a person sees of the group: replicas, leases, canaries, suspensions, success rates (the dashboard's Fleet view).

    heartbeat(conn, group="orders", sidecar="orders-1", version="0.9", playbooks=4, in_flight=0,
              started_at=1767000000.0)               # this sidecar's row in fleet_replicas, seen now
    overview = read_overview(conn, "orders", own="orders-1")   # FleetOverview, frozen
    overview.as_json()                                # what GET /api/fleet answers

Every row was written by some sidecar of the group, maybe an older, buggy or hostile one. So
each list is bounded (:data:`LIMIT` rows; ``cut`` names the lists that had more), text is cut
in the query (``left()``, so a megabyte-long name never crosses the network) and again by
:func:`~suture.engine.fleet_values.clean_text`, counts go through ``as_count`` and times are
read as epoch seconds (``extract``, so ``'infinity'`` is a number, not a Python error) through
``as_epoch``, kept only within what a ``datetime`` can show. Which replica is stale is decided
on the server's clock, the one the heartbeats were written with.

Each list is its own statement: a statement the server refuses or stops (a huge table past
``statement_timeout``) empties that list and is named in ``errors``; only when nothing at all
could be read does :func:`read_overview` raise ``FleetUnavailable``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from suture.engine.errors import FleetUnavailable
from suture.engine.fleet_values import TEXT_LIMIT, as_count, as_epoch, clean_text, pg_text

if TYPE_CHECKING:  # the Snapshot names FleetOverview: importing this module must not load psycopg
    from .fleet_pg import FleetConnection

WORKER_INTERVAL = 5.0  # FleetWorker's default interval: one heartbeat per pass
STALE_AFTER = 3 * WORKER_INTERVAL  # a replica not seen for longer is shown as stale
LIMIT = 200  # rows per list
REASON_LIMIT = 1000  # characters of a suspension's reason or a canary's detail
INT4 = 2**31 - 1
LATEST_EPOCH = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a datetime holds

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaView:
    sidecar: str
    version: str
    playbooks: int
    in_flight: int
    started_at: float | None
    seen_at: float | None
    age: float | None  # seconds since its last heartbeat, server clock (None: unreadable)
    stale: bool  # not seen for more than STALE_AFTER (or its row's time is unreadable or in the future)
    own: bool  # this sidecar


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseView:
    playbook_id: str
    key: str
    holder: str
    token: int
    acquired_at: float | None
    expires_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryView:
    """The canary of one playbook version: the one running, else the last one."""

    playbook_id: str
    version: str
    fix_id: str
    sidecar: str
    state: str  # running, succeeded, failed, abandoned, resumed
    detail: str
    started_at: float | None
    ended_at: float | None
    expired: bool  # still 'running' past its expiry: its sidecar went away


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspensionView:
    playbook_id: str
    reason: str
    by: str
    since: float | None
    cause_fix_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybookRate:
    """Applied fixes of a playbook across the group (the fleet_outcomes view)."""

    playbook_id: str
    successes: int
    failures: int
    sidecars: int
    last_finished_at: float | None

    @property
    def rate(self) -> float | None:
        judged = self.successes + self.failures
        return round(self.successes / judged, 4) if judged else None


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetOverview:
    group: str
    own: str
    at: float | None  # the server's clock when read
    replicas: tuple[ReplicaView, ...] = ()
    leases: tuple[LeaseView, ...] = ()
    canaries: tuple[CanaryView, ...] = ()
    suspensions: tuple[SuspensionView, ...] = ()
    outcomes: tuple[PlaybookRate, ...] = ()
    cut: tuple[str, ...] = ()  # the lists that had more than LIMIT rows
    errors: tuple[str, ...] = ()  # "list: why" for each list that could not be read

    def as_json(self) -> dict[str, Any]:
        """JSON values: times in ISO 8601 UTC (None when unknown)."""
        return {
            "group": self.group, "own": self.own, "at": _iso(self.at), "stale_after": STALE_AFTER, "limit": LIMIT,
            "replicas": [{"sidecar": r.sidecar, "version": r.version, "playbooks": r.playbooks,
                          "in_flight": r.in_flight, "started_at": _iso(r.started_at), "seen_at": _iso(r.seen_at),
                          "age": r.age, "stale": r.stale, "own": r.own} for r in self.replicas],
            "leases": [{"playbook_id": x.playbook_id, "key": x.key, "holder": x.holder, "token": x.token,
                        "acquired_at": _iso(x.acquired_at), "expires_at": _iso(x.expires_at)} for x in self.leases],
            "canaries": [{"playbook_id": c.playbook_id, "version": c.version, "fix_id": c.fix_id,
                          "sidecar": c.sidecar, "state": c.state, "detail": c.detail,
                          "started_at": _iso(c.started_at), "ended_at": _iso(c.ended_at), "expired": c.expired}
                         for c in self.canaries],
            "suspensions": [{"playbook_id": s.playbook_id, "reason": s.reason, "by": s.by, "since": _iso(s.since),
                             "cause_fix_id": s.cause_fix_id} for s in self.suspensions],
            "outcomes": [{"playbook_id": o.playbook_id, "successes": o.successes, "failures": o.failures,
                          "rate": o.rate, "sidecars": o.sidecars, "last_finished_at": _iso(o.last_finished_at)}
                         for o in self.outcomes],
            "cut": list(self.cut), "errors": list(self.errors),
        }


HEARTBEAT = """
    INSERT INTO fleet_replicas AS r (grp, sidecar, suture_version, playbooks, in_flight, started_at, seen_at)
    VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), clock_timestamp())
    ON CONFLICT (grp, sidecar) DO UPDATE SET
        suture_version = EXCLUDED.suture_version, playbooks = EXCLUDED.playbooks, in_flight = EXCLUDED.in_flight,
        started_at = EXCLUDED.started_at, seen_at = EXCLUDED.seen_at"""


def heartbeat(conn: FleetConnection, *, group: str, sidecar: str, version: str, playbooks: int, in_flight: int,
              started_at: float | None) -> None:
    """Upsert this sidecar's row of ``fleet_replicas``, seen now (server clock); FleetUnavailable when down."""
    start = started_at if started_at is not None and math.isfinite(started_at) and started_at > 0 else None
    with conn.transaction(atomic=False) as pg:
        pg.execute(HEARTBEAT, [pg_text(group), pg_text(sidecar), pg_text(version)[:TEXT_LIMIT],
                               min(max(0, playbooks), INT4), min(max(0, in_flight), INT4), start])


# -- reading: one statement per list, each bounded --

EPOCH = "extract(epoch FROM {})::float8"  # float8 arithmetic: an infinite time gives ±Infinity, never an error
T, R = TEXT_LIMIT + 1, REASON_LIMIT + 1  # left() keeps one character more, so clean_text can mark the cut

REPLICAS = f"""
    SELECT left(sidecar, {T}), left(suture_version, {T}), playbooks, in_flight, {EPOCH.format("started_at")},
           {EPOCH.format("seen_at")},
           {EPOCH.format("clock_timestamp()")} - {EPOCH.format("seen_at")}, sidecar = %(own)s
    FROM fleet_replicas WHERE grp = %(grp)s
    ORDER BY sidecar = %(own)s DESC, seen_at DESC, sidecar LIMIT %(limit)s"""
LEASES = f"""
    SELECT left(playbook_id, {T}), left(key, {T}), left(holder, {T}), token, {EPOCH.format("acquired_at")},
           {EPOCH.format("expires_at")}
    FROM fleet_leases WHERE grp = %(grp)s AND holder IS NOT NULL AND expires_at > clock_timestamp()
    ORDER BY expires_at, playbook_id, key LIMIT %(limit)s"""
CANARIES = f"""
    SELECT * FROM (
        SELECT DISTINCT ON (playbook_id, playbook_version)
               left(playbook_id, {T}), left(playbook_version, {T}), left(fix_id, {T}), left(sidecar, {T}), state,
               left(detail, {R}), {EPOCH.format("started_at")} AS started, {EPOCH.format("ended_at")},
               state = 'running' AND expires_at <= clock_timestamp()
        FROM fleet_canaries WHERE grp = %(grp)s
        ORDER BY playbook_id, playbook_version, state = 'running' DESC, started_at DESC) AS latest
    ORDER BY started DESC NULLS LAST LIMIT %(limit)s"""
SUSPENSIONS = f"""
    SELECT left(playbook_id, {T}), left(reason, {R}), left(suspended_by, {T}), {EPOCH.format("suspended_at")},
           left(cause_fix_id, {T})
    FROM fleet_suspensions WHERE grp = %(grp)s AND resumed_at IS NULL
    ORDER BY suspended_at DESC, playbook_id LIMIT %(limit)s"""
OUTCOMES = f"""
    SELECT left(playbook_id, {T}), successes, failures, sidecars, {EPOCH.format("last_finished_at")}
    FROM fleet_outcomes WHERE grp = %(grp)s
    ORDER BY successes + failures DESC, playbook_id LIMIT %(limit)s"""
NOW = f"SELECT {EPOCH.format('clock_timestamp()')}"


def read_overview(conn: FleetConnection, group: str, *, own: str) -> FleetOverview:
    """The group as its tables say now, every list bounded and every value cleaned (see the module docstring)."""
    args = {"grp": pg_text(group), "own": pg_text(own), "limit": LIMIT + 1}
    errors: list[str] = []
    cut: list[str] = []

    def rows(name: str, sql: str) -> list[Row]:
        try:
            with conn.transaction(atomic=False) as pg:
                got = pg.execute(sql, args).fetchall()
        except FleetUnavailable as exc:
            errors.append(f"{name}: {exc}")
            return []
        if len(got) > LIMIT:
            cut.append(name)
        return got[:LIMIT]

    sections: dict[str, tuple[str, Callable[[Row], Any]]] = {
        "replicas": (REPLICAS, _replica), "leases": (LEASES, _lease), "canaries": (CANARIES, _canary),
        "suspensions": (SUSPENSIONS, _suspension), "outcomes": (OUTCOMES, _rate),
    }
    read = {name: tuple(make(row) for row in rows(name, sql)) for name, (sql, make) in sections.items()}
    now = rows("now", NOW)
    if len(errors) == len(sections) + 1:
        raise FleetUnavailable(errors[0].partition(": ")[2])
    return FleetOverview(group=clean_text(group), own=clean_text(own), at=_epoch(now[0][0]) if now else None,
                         replicas=read["replicas"], leases=read["leases"], canaries=read["canaries"],
                         suspensions=read["suspensions"], outcomes=read["outcomes"], cut=tuple(cut),
                         errors=tuple(errors))


def _replica(row: Sequence[Any]) -> ReplicaView:
    age = as_epoch(row[6])  # a number of seconds, read like an epoch (finite or None)
    return ReplicaView(sidecar=clean_text(row[0]), version=clean_text(row[1]), playbooks=as_count(row[2]),
                       in_flight=as_count(row[3]), started_at=_epoch(row[4]), seen_at=_epoch(row[5]),
                       age=None if age is None else round(age, 3),
                       stale=age is None or not -WORKER_INTERVAL <= age <= STALE_AFTER, own=row[7] is True)


def _lease(row: Sequence[Any]) -> LeaseView:
    return LeaseView(playbook_id=clean_text(row[0]), key=clean_text(row[1]), holder=clean_text(row[2]),
                     token=as_count(row[3]), acquired_at=_epoch(row[4]), expires_at=_epoch(row[5]))


def _canary(row: Sequence[Any]) -> CanaryView:
    return CanaryView(playbook_id=clean_text(row[0]), version=clean_text(row[1]), fix_id=clean_text(row[2]),
                      sidecar=clean_text(row[3]), state=clean_text(row[4], 32), detail=clean_text(row[5], REASON_LIMIT),
                      started_at=_epoch(row[6]), ended_at=_epoch(row[7]), expired=row[8] is True)


def _suspension(row: Sequence[Any]) -> SuspensionView:
    return SuspensionView(playbook_id=clean_text(row[0]), reason=clean_text(row[1], REASON_LIMIT),
                          by=clean_text(row[2]), since=_epoch(row[3]), cause_fix_id=clean_text(row[4]))


def _rate(row: Sequence[Any]) -> PlaybookRate:
    return PlaybookRate(playbook_id=clean_text(row[0]), successes=as_count(row[1]), failures=as_count(row[2]),
                        sidecars=as_count(row[3]), last_finished_at=_epoch(row[4]))


def _epoch(value: Any) -> float | None:
    """Epoch seconds after 1970 that a datetime can show (up to 9999), else None."""
    got = as_epoch(value)
    return got if got is not None and 0.0 < got <= LATEST_EPOCH else None


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
