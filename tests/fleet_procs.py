"""Real sidecar processes in one fleet group, on a PostgreSQL of their own that a test may stop and restart.

    from .fleet_procs import FleetProcs, Pg, dedicated_pg, procs  # noqa: F401 (fixtures)

    def test_x(procs: FleetProcs) -> None:
        procs.playbook(PLAYBOOK)                          # written into the one playbooks folder they share
        sidecars = procs.start(3, scope="replica", canary=0)
        for s in sidecars:
            s.trigger("ERROR upstream timeout")          # a line appended to that sidecar's watched log
        fix = sidecars[0].wait_fix(lambda f: f["status"] == "succeeded")
        procs.pg.stop(); procs.pg.start()                # fast shutdown, then the same server on the same port
        rows = procs.rows("SELECT sidecar, id FROM fleet_fixes")
        procs.stop_all()                                 # SIGTERM, then SIGKILL after a wait
        local = sidecars[0].history()                    # its DuckDB, opened read-only once it stopped

:func:`dedicated_pg` is one PostgreSQL 15 per test module (``tests/servers.run_postgres`` into a folder
of its own), never the session's server that other tests share; :func:`procs` gives each test a new
database on it (owned by the sidecars' role, so suture migrates it as in production) and kills every
sidecar it started when the test ends, passed or failed. Each sidecar is ``python -m suture.sidecar.cli
run --config FILE`` with its own suture.yaml (``name: replica-N``, its own state_dir, the API on a port
the kernel picks, read from its ``listening on`` line), its stderr in ``sidecar.log`` beside it, and
``PGPASSWORD`` in its environment (the URL holds none). While it runs, its history is read through its
API (``GET /api/fixes``, no token needed); after it stopped, from its DuckDB file directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg import sql

from .conftest import SETTINGS, dedent
from .servers import NO_POSTGRES, PostgresServer, _die_with_us, _pg_bin, run_postgres

SUTURE = [sys.executable, "-m", "suture.sidecar.cli"]
ROLE = "suture"
GROUP = "orders"
START_TIMEOUT = 30.0
STOP_GRACE = 10.0
LISTENING = re.compile(r"api +listening on (http://\S+)")

Fix = dict[str, Any]


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2,
               explain: Callable[[], str] | None = None) -> Any:
    """``check()``'s first truthy answer within ``timeout`` seconds, or a failure naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout:g}s" + (f"\n{explain()}" if explain else ""))
        time.sleep(every)


# -- the PostgreSQL of this module's tests --


class Pg:
    """A PostgreSQL started by run_postgres that the test may stop (fast shutdown) and start again on its port."""

    def __init__(self, root: Path, server: PostgresServer, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.server = server
        self.proc = proc
        self.argv = list(proc.args)  # type: ignore[arg-type]  # run_postgres's exact command line (port included)
        self.restarted: list[subprocess.Popen[bytes]] = []
        self.database = server.database

    @property
    def password(self) -> str:
        return self.server.password

    def url(self, database: str | None = None) -> str:
        """As suture.yaml writes it: no password (PGPASSWORD carries it)."""
        return self.server.url(password="", database=database or self.database)

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Fast shutdown (SIGINT: what ``pg_ctl stop -m fast`` sends), waited for."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start(self) -> None:
        """The same server again (same data folder, options and port), as its own user; waits until it answers."""
        if self.proc.poll() is None:
            return
        as_root = os.geteuid() == 0
        user = "postgres" if as_root else None
        with (self.root / "server.log").open("ab") as out:
            proc = subprocess.Popen(self.argv, cwd=self.root, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_us,
                                    user=user, group=user, extra_groups=[] if as_root else None)
        self.proc = proc
        self.restarted.append(proc)

        def answers() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"postgres exited with {proc.returncode} on restart:\n{self.log()[-2000:]}")
            try:
                self.server.admin("postgres").close()
                return True
            except psycopg.OperationalError:
                return False

        wait_until("postgres answers again", answers, START_TIMEOUT, every=0.05)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")
        return ""

    def close(self) -> None:
        for proc in self.restarted:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(STOP_GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def admin(self, database: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        """A superuser connection (autocommit) over the Unix socket."""
        conn = self.server.admin(database or self.database)
        conn.autocommit = True
        return conn


@pytest.fixture(scope="module")
def dedicated_pg() -> Iterator[Pg]:
    """A PostgreSQL 15 for this module alone: stopping it stops no other test's server."""
    if _pg_bin() is None:
        pytest.skip(NO_POSTGRES)
    root = Path(tempfile.mkdtemp(prefix="suture-fleet-procs-pg-"))
    try:
        with run_postgres(root, role=ROLE, database="suture", max_connections=60) as (server, proc):
            pg = Pg(root, server, proc)
            try:
                yield pg
            finally:
                pg.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- one sidecar process --


@dataclass
class Sidecar:
    """One ``suture run`` process and the files it was given."""

    name: str
    home: Path  # suture.yaml, state/, sidecar.log, logs/app.log
    target: Path
    log_file: Path  # the file its source `app` tails
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    api: str = ""
    paused: bool = False  # SIGSTOPped by the test
    terminated: bool = False  # SIGTERM sent (once)

    @property
    def config(self) -> Path:
        return self.home / "suture.yaml"

    @property
    def stderr_path(self) -> Path:
        return self.home / "sidecar.log"

    @property
    def db_path(self) -> Path:
        return self.home / "state" / "suture.duckdb"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")
        return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        out = self.stderr_path.open("ab")
        try:
            self.proc = subprocess.Popen([*SUTURE, "run", "--config", str(self.config)], cwd=self.home,
                                         env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_us)
        finally:
            out.close()
        self.terminated = False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until its API listens and its playbooks are loaded (its tailers start before the API)."""

        def ready() -> bool:
            if not self.alive():
                pytest.fail(f"{self.name} exited with {self.proc and self.proc.returncode}:\n{self.output()[-3000:]}")
            text = self.output()
            found = LISTENING.search(text)
            if found and re.search(r"\bloaded\b", text):
                self.api = found[1]
                return True
            return False

        wait_until(f"{self.name} ready", ready, timeout, every=0.05, explain=lambda: self.output()[-3000:])

    def trigger(self, line: str, times: int = 1) -> None:
        with self.log_file.open("a") as fh:
            for _ in range(times):
                fh.write(line.rstrip("\n") + "\n")

    # -- while it runs: its API --

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """(status, body) of a GET to its API; a process that died meanwhile fails the test with its output."""
        try:
            with urllib.request.urlopen(self.api + path, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError as exc:
            time.sleep(0.5)
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                pytest.fail(f"{self.name} died (exit {code}) while asked GET {path} ({exc!r}):\n"
                            f"{self.output()[-6000:]}")
            raise

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, f"{self.name} GET {path}: {status} {body[:500]!r}"
        return json.loads(body)

    def fixes(self) -> list[Fix]:
        """Its fixes, oldest first (through the API)."""
        return list(reversed(self.get_json("/api/fixes?limit=1000")["fixes"]))

    def fix(self, fix_id: str) -> Fix:
        """One fix with its journal (``steps``: step, at, detail)."""
        return dict(self.get_json(f"/api/fixes/{fix_id}"))

    def wait_fix(self, predicate: Callable[[Fix], bool], timeout: float = 20.0, what: str = "") -> Fix:
        """The first of its fixes ``predicate`` accepts."""

        def found() -> Fix | None:
            if not self.alive():
                pytest.fail(f"{self.name} died:\n{self.output()[-3000:]}")
            return next((f for f in self.fixes() if predicate(f)), None)

        return wait_until(f"{self.name}: {what or 'a fix'}", found, timeout,
                          explain=lambda: f"fixes: {self.summary()}\n{self.output()[-2000:]}")

    def summary(self) -> list[tuple[str, str, str, str]]:
        with contextlib.suppress(Exception):
            return [(f["id"], f["playbook_id"], f["decision"], f["status"]) for f in self.fixes()]
        return []

    # -- signals --

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def terminate(self) -> None:
        """SIGCONT (should it be stopped), then SIGTERM, once: a second SIGTERM may land while Python finalizes,
        with the default handler back, and kill it."""
        proc = self.proc
        if proc is None or proc.poll() is not None or self.terminated:
            return
        self.terminated = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        self.paused = False

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """:meth:`terminate`, then SIGKILL after ``grace`` seconds; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        self.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return proc.returncode

    # -- once stopped: its DuckDB --

    def history(self) -> tuple[list[Fix], list[Fix]]:
        """(fixes, fix_steps) of its DuckDB, opened read-only; only once the process has ended."""
        assert not self.alive(), f"{self.name} still holds {self.db_path}"
        con = duckdb.connect(str(self.db_path), read_only=True)
        try:
            fixes = _dicts(con.execute("SELECT * FROM fixes ORDER BY started_at, id"))
            steps = _dicts(con.execute("SELECT * FROM fix_steps ORDER BY fix_id, seq"))
        finally:
            con.close()
        return fixes, steps


def _dicts(cur: Any) -> list[dict[str, Any]]:
    columns = [d[0] for d in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


# -- a group of them --


class FleetProcs:
    """The sidecars of one test, their database on the module's PostgreSQL, and the playbooks they share."""

    def __init__(self, pg: Pg, root: Path, database: str) -> None:
        self.pg = pg
        self.root = root
        self.database = database
        self.playbooks = root / "playbooks"
        self.playbooks.mkdir(parents=True)
        self.sidecars: list[Sidecar] = []
        self._chatter_stop = threading.Event()
        self._chatter: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.pg.url(self.database)

    def playbook(self, text: str, file: str | None = None) -> None:
        body = dedent(text)
        found = re.search(r"^id: *(\S+)", body, re.M)
        name = file or f"{found[1] if found else 'pb'}.yaml"
        (self.playbooks / name).write_text(body)

    def make_target(self, path: Path) -> Path:
        (path / "config").mkdir(parents=True, exist_ok=True)
        (path / "logs").mkdir(exist_ok=True)
        (path / "config" / "settings.yaml").write_text(SETTINGS)
        return path

    def add(self, index: int, *, target: Path | None = None, group: str = GROUP, canary: int = 0,
            max_concurrent: int = 100, lease: str = "30s", extra: str = "", threshold: float = 85) -> Sidecar:
        """Write replica-``index``'s files (its own target unless ``target`` is shared); not started."""
        name = f"replica-{index}"
        home = self.root / name
        (home / "logs").mkdir(parents=True)
        target = target or self.make_target(home / "target")
        log_file = home / "logs" / "app.log"
        log_file.write_text("")
        (home / "suture.yaml").write_text(dedent(f"""
            name: {name}
            target_root: {target}
            allowed_paths: [config/]
            allowed_commands: [{shutil.which("sleep") or "/bin/sleep"}]
            playbooks: {self.playbooks}
            state_dir: ./state
            threshold: {threshold}
            sources: {{app: {{file: {log_file}}}}}
            api: {{listen: "127.0.0.1:0"}}
            fleet: {{postgres: "{self.url}", group: {group}, canary: {canary}, max_concurrent: {max_concurrent},
                     lease: {lease}}}
        """) + dedent(extra))
        env = {**os.environ, "PGPASSWORD": self.pg.password}
        env.pop("SUTURE_TOKEN", None)
        sidecar = Sidecar(name=name, home=home, target=target, log_file=log_file, env=env)
        self.sidecars.append(sidecar)
        return sidecar

    def start(self, n: int, *, shared_target: bool = False, **options: Any) -> list[Sidecar]:
        """``n`` sidecars, replica-1 .. replica-n, started together and waited for (ready, schema migrated)."""
        first = len(self.sidecars) + 1
        target = self.make_target(self.root / "shared-target") if shared_target else None
        started = [self.add(i, target=target, **options) for i in range(first, first + n)]
        for s in started:
            s.start()
        for s in started:
            s.wait_ready()
        wait_until("the fleet schema migrated", lambda: self.table_exists("fleet_fixes"), START_TIMEOUT)
        return started

    def stop_all(self) -> None:
        self.quiet()
        for s in self.sidecars:  # SIGTERM all first: they stop in parallel
            s.terminate()
        for s in self.sidecars:
            s.stop()

    def trigger_all(self, line: str, times: int = 1) -> None:
        for s in self.sidecars:
            s.trigger(line, times)

    def keep_logging(self, line: str = "INFO GET /orders 200", every: float = 0.25) -> None:
        """Append ``line`` to every sidecar's log every ``every`` seconds until the test ends: a validation window
        needs lines to judge (with none it ends inconclusive)."""
        if self._chatter is not None:
            return

        def chatter() -> None:
            while not self._chatter_stop.wait(every):
                for s in list(self.sidecars):
                    with contextlib.suppress(OSError):
                        s.trigger(line)

        self._chatter = threading.Thread(target=chatter, name="fleet-procs-chatter", daemon=True)
        self._chatter.start()

    def quiet(self) -> None:
        """Stop :meth:`keep_logging`."""
        self._chatter_stop.set()
        if self._chatter is not None:
            self._chatter.join(5)

    # -- the group's tables --

    def rows(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with self.pg.admin(self.database) as conn:
            cur = conn.execute(query, params)
            return _dicts(cur) if cur.description else []

    def table_exists(self, table: str) -> bool:
        try:
            got = self.rows("SELECT to_regclass(%s) IS NOT NULL AS found", [table])
        except psycopg.OperationalError:
            return False
        return bool(got and got[0]["found"])

    def suture(self, sidecar: Sidecar, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A ``suture`` CLI command with that sidecar's config and environment."""
        return subprocess.run([*SUTURE, *args, "--config", str(sidecar.config)], env=sidecar.env, cwd=sidecar.home,
                              capture_output=True, text=True, timeout=timeout)

    def logs(self) -> str:
        """Every sidecar's last output, for a failure message."""
        return "\n".join(f"--- {s.name} ---\n{s.output()[-1500:]}" for s in self.sidecars)


@pytest.fixture
def procs(dedicated_pg: Pg) -> Iterator[FleetProcs]:
    """A fresh database on the module's PostgreSQL (started again if a test left it stopped), and teardown
    that stops every sidecar the test started (SIGTERM, then SIGKILL), whatever the test's result."""
    dedicated_pg.start()
    database = f"fleet_{uuid.uuid4().hex[:12]}"
    with dedicated_pg.admin("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(ROLE)))
    root = Path(tempfile.mkdtemp(prefix="suture-fleet-procs-"))
    group = FleetProcs(dedicated_pg, root, database)
    try:
        yield group
    finally:
        try:
            group.stop_all()
        finally:
            for s in group.sidecars:  # whatever stop_all could not end
                if s.proc is not None and s.proc.poll() is None:
                    s.proc.kill()
                    s.proc.wait()
            dedicated_pg.start()
            with dedicated_pg.admin("postgres") as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            shutil.rmtree(root, ignore_errors=True)
