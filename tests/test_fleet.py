"""Outcome history shared by a fleet of sidecars through Parquet in a shared folder; migrations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from suture.engine.config import load_config
from suture.engine.store import MIGRATIONS, Store

from .conftest import RATE_LIMIT, dedent, write_config
from .test_sidecar import seed_successes

pytestmark = pytest.mark.slow


def sidecar_dir(root: Path, name: str, shared: Path) -> Path:
    """A sidecar's folder: target, playbooks (a base-70 playbook), config naming the shared fleet folder."""
    home = root / name
    target = home / "target"
    (target / "config").mkdir(parents=True)
    (target / "logs").mkdir()
    (target / "config" / "settings.yaml").write_text("upstream:\n  request_delay_s: 0.5\n")
    (target / "logs" / "app.log").write_text("")
    write_config(home, target, extra=f"name: {name}\nlearning: {{fleet: {shared}}}\n")
    (home / "playbooks" / "rate.yaml").write_text(dedent(RATE_LIMIT.replace("confidence: 90", "confidence: 70")))
    return home


def test_three_sidecars_learn_together_through_a_shared_folder(tmp_path, running):
    """a has 6 successes, b has 4, c has none: c counts 10 from the fleet and applies on its own."""
    shared = tmp_path / "fleet"
    homes = {n: sidecar_dir(tmp_path, n, shared) for n in ("a", "b", "c")}
    seed_successes(homes["a"] / "state", "rate-limit-backoff", 6)
    seed_successes(homes["b"] / "state", "rate-limit-backoff", 4)
    for name in ("a", "b"):  # each exports its own history into the shared folder
        out = subprocess.run([sys.executable, "-m", "suture.sidecar.cli", "history", "--export", str(shared),
                              "--config", str(homes[name] / "suture.yaml")], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert sorted(p.parent.name for p in shared.glob("*/fixes.parquet")) == ["a", "b"]
    c = running(load_config(homes["c"] / "suture.yaml", env={}))
    assert c.sidecar.outcomes("rate-limit-backoff").fleet_successes == 10
    log = homes["c"] / "target" / "logs" / "app.log"
    with open(log, "a") as fh:
        fh.write("ERROR 429 Too Many Requests\n" * 3)
    decided = c.wait_for(lambda e: e.kind == "decided")
    assert "APPLY" in decided.message, decided.message
    assert (shared / "c" / "fixes.parquet").exists()  # c shares its own history too


def test_an_older_history_file_is_upgraded_in_place(tmp_path):
    """A state_dir from version 1 gets every later migration on open and keeps its rows."""
    path = tmp_path / "suture.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER, name VARCHAR, applied_at TIMESTAMP)")
    version, name, sql = MIGRATIONS[0]
    con.execute(sql)
    con.execute("INSERT INTO schema_version VALUES (?, ?, now())", [version, name])
    con.execute("""INSERT INTO fixes (id, playbook_id, status, decision, started_at)
                   VALUES ('f-old', 'old-playbook', 'succeeded', 'apply', now())""")
    con.close()
    store = Store.open(path)
    try:
        assert store.version() == len(MIGRATIONS)
        assert store.query("SELECT id FROM fixes").rows == (("f-old",),)
        assert store.query("SELECT count(*) FROM suspensions").rows == ((0,),)
        applied = [v for v, *_ in store.query("SELECT * FROM schema_version ORDER BY version").rows]
        assert applied == [version for version, _, _ in MIGRATIONS] and applied[:3] == [1, 2, 3]
        assert store.query("SELECT count(*) FROM validations").rows == ((0,),)
    finally:
        store.close()


def test_every_query_in_the_readme_runs_on_a_real_history(tmp_path):
    """The ready-made SQL in docs/history.md runs (read-only path) against a history with data in it."""
    import re

    from .test_sidecar import seed_successes

    seed_successes(tmp_path, "rate-limit-backoff", 3)
    readme = (Path(__file__).resolve().parents[1] / "docs" / "history.md").read_text()
    section = readme[readme.index("# The history, in SQL"):readme.index("## Learning a person can explain")]
    queries = [q.strip() for block in re.findall(r"```sql\n(.*?)```", section, re.S) for q in block.split(";")]
    queries = [q for q in queries if q and not all(line.startswith("--") for line in q.splitlines())]
    assert len(queries) >= 7
    store = Store.open(tmp_path / "suture.duckdb", read_only=True)
    try:
        for q in queries:
            store.user_query(q, max_rows=100)
    finally:
        store.close()
