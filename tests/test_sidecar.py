"""The whole loop with real processes: the demo app logs 429s, the sidecar heals (or not)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from suture.engine.config import load_config
from suture.engine.store import Store
from suture.sidecar.demo import demo_source, free_port
from suture.sidecar.runtime import Event, Sidecar

pytestmark = pytest.mark.slow

PLAYBOOK = """
id: rate-limit-backoff
when:
  all:
    - log: {{source: app, pattern: '429 .*Too Many Requests', at_least: 5, within: 10s}}
    - probe: {{name: api, status: healthy}}
confidence: {confidence}
fix:
  - adjust: {{file: config/settings.yaml, key: upstream.request_delay_s, multiply: {factor}, max: 5}}
validate:
  window: 5s
  settle: 1500ms
  expect:
    - log: {{source: app, pattern: '429 .*Too Many Requests', at_most: 0}}
    - probe: {{name: api, status: healthy}}
cooldown: 1h
"""


class DemoWorld:
    """A copy of the demo in tmp_path: the app process and a sidecar thread."""

    def __init__(self, root: Path, *, confidence: float = 90, factor: float = 3, threshold: float = 85) -> None:
        shutil.copytree(demo_source(), root, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", ".suture", "logs"))
        self.root = root
        self.port = free_port()
        (root / "playbooks" / "rate-limit-backoff.yaml").write_text(PLAYBOOK.format(confidence=confidence, factor=factor))
        cfg = (root / "suture.yaml").read_text()
        cfg = cfg.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}").replace("threshold: 85", f"threshold: {threshold}")
        (root / "suture.yaml").write_text(cfg)
        self.settings = root / "config" / "settings.yaml"
        self.log = root / "logs" / "app.log"
        self.events: list[Event] = []
        self.final = threading.Event()
        self.app: subprocess.Popen[bytes] | None = None
        self.sidecar: Sidecar | None = None
        self.thread: threading.Thread | None = None

    def _listen(self, event: Event) -> None:
        self.events.append(event)
        if event.kind in ("succeeded", "rolled_back", "failed", "proposed", "inconclusive", "conflict", "exhausted"):
            self.final.set()

    def start(self) -> None:
        self.app = subprocess.Popen(
            [sys.executable, str(self.root / "app.py"), "--root", str(self.root), "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.sidecar = Sidecar(load_config(self.root / "suture.yaml", env={}), listeners=[self._listen])
        self.thread = threading.Thread(target=self.sidecar.run, daemon=True)
        self.thread.start()

    def wait_final(self, timeout: float = 40) -> Event:
        assert self.final.wait(timeout), [e.message for e in self.events]
        return next(e for e in reversed(self.events) if e.kind in ("succeeded", "rolled_back", "failed", "proposed", "inconclusive", "conflict", "exhausted"))

    def errors(self) -> int:
        return self.log.read_text().count("429 Client Error")

    def stop(self) -> None:
        if self.sidecar is not None:
            self.sidecar.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)
        if self.app is not None:
            self.app.terminate()
            self.app.wait(timeout=10)

    def history(self) -> list[dict]:
        store = Store.open(self.root / ".suture" / "suture.duckdb", read_only=True)
        try:
            return store.query("SELECT * FROM fixes ORDER BY started_at").dicts()
        finally:
            store.close()


@pytest.fixture
def world(tmp_path):
    made: list[DemoWorld] = []

    def make(**kw) -> DemoWorld:
        w = DemoWorld(tmp_path / f"demo{len(made)}", **kw)
        made.append(w)
        w.start()
        return w

    yield make
    for w in made:
        w.stop()


def test_a_fix_that_works_stops_the_errors(world):
    """The app's 429s stop, the file holds the new value, the outcome is succeeded, a row exists."""
    w = world()
    final = w.wait_final()
    assert final.kind == "succeeded"
    assert "request_delay_s: 0.3" in w.settings.read_text()
    errors_then = w.errors()
    time.sleep(2)
    assert w.errors() == errors_then
    w.stop()
    (row,) = w.history()
    assert (row["playbook_id"], row["status"], row["decision"]) == ("rate-limit-backoff", "succeeded", "apply")
    assert row["errors_before"] >= 5 and row["errors_after"] == 0 and row["backup_id"]


def test_a_fix_that_does_not_help_is_rolled_back_byte_identical(world):
    """multiply 1.01 leaves the 429s: rolled back within the window, sha256 as before."""
    w = world(factor=1.01)
    before = hashlib.sha256(w.settings.read_bytes()).hexdigest()
    final = w.wait_final()
    assert final.kind == "rolled_back"
    assert hashlib.sha256(w.settings.read_bytes()).hexdigest() == before
    w.stop()
    (row,) = w.history()
    assert row["status"] == "rolled_back" and row["errors_after"] >= 1
    took = (row["finished_at"] - row["started_at"]).total_seconds()
    assert took < 5, "a breach after settle rolls back at once, before the 5s window ends"


def test_below_the_threshold_it_only_proposes(world):
    """Confidence 70 against threshold 85: the file is untouched and the outcome is proposed."""
    w = world(confidence=70)
    before = w.settings.read_bytes()
    final = w.wait_final()
    assert final.kind == "proposed"
    assert w.settings.read_bytes() == before
    w.stop()
    (row,) = w.history()
    assert (row["status"], row["decision"], row["adjusted_confidence"]) == ("proposed", "propose", 70.0)


def seed_successes(state_dir: Path, playbook_id: str, n: int) -> None:
    """Write n approved, succeeded fixes of a playbook into a history file."""
    from suture.engine.decide import Decision

    store = Store.open(state_dir / "suture.duckdb")
    try:
        for i in range(n):
            at = 1_700_000_000.0 + i * 600
            d = Decision(playbook_id=playbook_id, key="", verdict="apply", reason="approved by a person",
                         base_confidence=70, adjusted_confidence=70, threshold=85, successes=i, failures=0,
                         decided_at=at)
            store.begin_fix(f"f-seed-{i}", d, status="matched", playbook_version="seed", fix_types=["adjust"],
                            errors_before=5, approved_by="test")
            store.finish(f"f-seed-{i}", "succeeded", at + 30)
    finally:
        store.close()


def test_recorded_successes_make_a_base_70_playbook_apply_on_its_own(world, tmp_path):
    """With ten successes in its history, the base-70 playbook applies without a person."""
    seed_successes(tmp_path / "demo0" / ".suture", "rate-limit-backoff", 10)
    w = world(confidence=70)
    assert w.wait_final().kind == "succeeded"
    w.stop()
    last = w.history()[-1]
    assert (last["decision"], last["successes"]) == ("apply", 10)
    assert last["adjusted_confidence"] == pytest.approx(85.0)
