"""Leases with fencing tokens on shared targets, and the group's blast-radius caps, in PostgreSQL.

    leases = Leases(fleet)
    got = leases.acquire("orders", "cache-restart", "", holder="orders-1", ttl=30, max_concurrent=1)
    match got:
        case Lease():  ...           # act; store got.token with every journal step ({"fence": token})
        case Held() | Busy():  ...   # record skip with got.reason()
    leases.check(got)                # before each step: is this token still the newest, unexpired one?
    leases.renew(got, ttl=30)        # a longer fix keeps its lease (None: it was lost)
    leases.release(got)              # the fix ended

One row per (group, playbook, key) in ``fleet_leases``, never deleted, so its token only grows:
each acquisition takes ``nextval('fleet_fence')`` (and at least the row's token + 1, should a
row have been rewritten by hand). Expiry is the server's clock (``clock_timestamp()``), the one
clock every sidecar shares: a sidecar with a wrong clock cannot steal or keep a lease.

Acquisition is one upsert; with ``max_concurrent`` it is one transaction under a
transaction-scoped advisory lock on (group, playbook), so ``max_concurrent`` (leases held at once for one playbook, across its keys) is counted and
enforced atomically. A row whose expiry lies further ahead than ten times the asked TTL was
not written by a renewal (which extends by one TTL): it is treated as expired, so a buggy or
hostile holder cannot lock a target for ever.

What the rows say is read through ``engine.fleet_values`` (bounded text, sane numbers): a
holder's name of a megabyte or a NULL expiry does not stop the reader.
"""

from __future__ import annotations

from suture.engine.fleet_values import Busy, Held, Lease, as_count, as_epoch, clean_text

from .fleet_pg import FleetConnection, PgConnection

HOSTILE_FACTOR = 10  # an expiry beyond now + this * ttl was not written by a renewal
HOUR = 3600.0

ACQUIRE = """
    INSERT INTO fleet_leases AS l (grp, playbook_id, key, holder, token, acquired_at, expires_at)
    VALUES (%(grp)s, %(pb)s, %(key)s, %(holder)s, nextval('fleet_fence'), clock_timestamp(),
            clock_timestamp() + make_interval(secs => %(ttl)s))
    ON CONFLICT (grp, playbook_id, key) DO UPDATE SET
        holder = EXCLUDED.holder, token = greatest(EXCLUDED.token, l.token + 1),
        acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
    WHERE l.holder IS NULL OR l.expires_at <= clock_timestamp()
       OR l.expires_at > clock_timestamp() + make_interval(secs => %(ttl)s * %(factor)s)
    RETURNING token, extract(epoch FROM expires_at)::float8"""
RELEASE = """
    UPDATE fleet_leases SET holder = NULL, expires_at = clock_timestamp()
    WHERE grp = %s AND playbook_id = %s AND key = %s AND token = %s AND holder = %s"""
PLAYBOOK_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
HELD_ELSEWHERE = """
    SELECT count(*) FROM fleet_leases
    WHERE grp = %(grp)s AND playbook_id = %(pb)s AND key <> %(key)s AND holder IS NOT NULL
      AND expires_at > clock_timestamp()
      AND expires_at <= clock_timestamp() + make_interval(secs => %(ttl)s * %(factor)s)"""


def acquire_in(
    pg: PgConnection, group: str, playbook_id: str, key: str, holder: str, ttl: float, *,
    max_concurrent: int | None = None,
) -> Lease | Held | Busy:
    """:meth:`Leases.acquire` inside the caller's transaction (the fleet gate's admission takes the lease
    in the same transaction as its other reads and writes). With ``max_concurrent`` the caller's block
    must be a transaction: the advisory lock lasts until it ends."""
    args = {"grp": group, "pb": playbook_id, "key": key, "holder": holder, "ttl": float(ttl),
            "factor": HOSTILE_FACTOR}
    if max_concurrent is not None:
        pg.execute(PLAYBOOK_LOCK, [lock_key(group, playbook_id)])
        row = pg.execute(HELD_ELSEWHERE, args).fetchone()
        held = as_count(row[0] if row else 0)
        if held >= max_concurrent:
            return Busy(held=held, limit=max_concurrent)
    got = pg.execute(ACQUIRE, args).fetchone()
    if got is not None:
        return Lease(group=group, playbook_id=playbook_id, key=key, holder=holder, token=int(got[0]),
                     expires_at=float(got[1]))
    row = pg.execute(
        """SELECT holder, token, extract(epoch FROM expires_at)::float8 FROM fleet_leases
           WHERE grp = %s AND playbook_id = %s AND key = %s""",
        [group, playbook_id, key],
    ).fetchone()
    if row is None:  # deleted between the two statements (by hand): nobody holds it, try again later
        return Held(by="", until=None, token=None)
    token = row[1] if isinstance(row[1], int) else None
    return Held(by=clean_text(row[0]), until=as_epoch(row[2]), token=token)


def release_in(pg: PgConnection, lease: Lease) -> bool:
    """Give ``lease`` up inside the caller's transaction (the row and its token stay); False if not ours any more."""
    cur = pg.execute(RELEASE, [lease.group, lease.playbook_id, lease.key, lease.token, lease.holder])
    return cur.rowcount == 1


def lock_key(group: str, playbook_id: str) -> str:
    """The advisory lock every admission and every capped acquisition of (group, playbook) takes."""
    return f"{group}\x1f{playbook_id}"


class Leases:
    """Leases of one fleet database (any group); every method raises FleetUnavailable when it is down."""

    def __init__(self, fleet: FleetConnection) -> None:
        self.fleet = fleet

    def acquire(
        self, group: str, playbook_id: str, key: str, holder: str, ttl: float, *, max_concurrent: int | None = None
    ) -> Lease | Held | Busy:
        """Take the lease on (group, playbook, key) for ``ttl`` seconds, or say who holds it (or that
        ``max_concurrent`` leases of this playbook are held already on other keys)."""
        # without a cap the upsert alone is atomic: one statement, one round trip
        with self.fleet.transaction(atomic=max_concurrent is not None) as pg:
            return acquire_in(pg, group, playbook_id, key, holder, ttl, max_concurrent=max_concurrent)

    def check(self, lease: Lease) -> bool:
        """Whether ``lease`` is still the newest one on its target and unexpired (server time)."""
        with self.fleet.transaction(atomic=False) as pg:
            row = pg.execute(
                """SELECT token = %s AND holder = %s AND expires_at > clock_timestamp() FROM fleet_leases
                   WHERE grp = %s AND playbook_id = %s AND key = %s""",
                [lease.token, lease.holder, lease.group, lease.playbook_id, lease.key],
            ).fetchone()
        return bool(row and row[0] is True)

    def lost(self, lease: Lease) -> str | None:
        """None while ``lease`` is the newest unexpired one on its target; else what became of it."""
        with self.fleet.transaction(atomic=False) as pg:
            row = pg.execute(
                """SELECT left(holder, 257), token, expires_at > clock_timestamp() FROM fleet_leases
                   WHERE grp = %s AND playbook_id = %s AND key = %s""",
                [lease.group, lease.playbook_id, lease.key],
            ).fetchone()
        if row is None:
            return "its lease row is gone"
        if row[1] != lease.token or row[0] != lease.holder:
            holder = clean_text(row[0]) or "nobody"
            return f"a newer lease (token {clean_text(row[1])}, held by {holder}) replaced it"
        if row[2] is not True:
            return "the lease expired before it was renewed"
        return None

    def renew(self, lease: Lease, ttl: float) -> Lease | None:
        """Extend a lease still held to now + ``ttl``; None when it expired or was taken over."""
        with self.fleet.transaction(atomic=False) as pg:
            row = pg.execute(
                """UPDATE fleet_leases SET expires_at = clock_timestamp() + make_interval(secs => %s)
                   WHERE grp = %s AND playbook_id = %s AND key = %s AND token = %s AND holder = %s
                     AND expires_at > clock_timestamp()
                   RETURNING extract(epoch FROM expires_at)::float8""",
                [float(ttl), lease.group, lease.playbook_id, lease.key, lease.token, lease.holder],
            ).fetchone()
        if row is None:
            return None
        return Lease(group=lease.group, playbook_id=lease.playbook_id, key=lease.key, holder=lease.holder,
                     token=lease.token, expires_at=float(row[0]))

    def release(self, lease: Lease) -> bool:
        """Give the lease up (the row and its token stay); False if it was not ours any more."""
        with self.fleet.transaction(atomic=False) as pg:
            return release_in(pg, lease)

    # -- blast radius --

    def held(self, group: str, playbook_id: str) -> int:
        """Leases of this playbook held now across the group (what max_concurrent caps)."""
        with self.fleet.transaction(atomic=False) as pg:
            row = pg.execute(
                """SELECT count(*) FROM fleet_leases WHERE grp = %s AND playbook_id = %s AND holder IS NOT NULL
                   AND expires_at > clock_timestamp()""",
                [group, playbook_id],
            ).fetchone()
        return as_count(row[0] if row else 0)

    def fixes_last_hour(self, group: str) -> int:
        """Fixes applied across the group that started within the last hour (the group-wide hourly cap),
        as shipped so far: a fix reaches PostgreSQL when its sidecar's outbox ships it."""
        with self.fleet.transaction(atomic=False) as pg:
            row = pg.execute(
                """SELECT count(*) FROM fleet_fixes WHERE grp = %s AND decision = 'apply'
                   AND started_at >= clock_timestamp() - make_interval(secs => %s)""",
                [group, HOUR],
            ).fetchone()
        return as_count(row[0] if row else 0)
