"""Shared test helpers: real files, a settable clock, small real playbook sets."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from suture.engine.config import Config, load_config
from suture.engine.loader import parse_playbook
from suture.engine.playbook import Playbook

from .containers import busybox_image, docker_api, docker_engine, docker_url, make_container  # noqa: F401 (fixtures)
from .servers import postgres_server, redis_server, silent_server  # noqa: F401 (fixtures)
from .system import (
    collection_modifyitems,
    configure_node,
    node_collection_finished,
    report_collectionfinish,
    terminal_summary,
    unconfigure,
)

# -- what the machine lacks, said at the start and at the end (tests/system.py) --

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    collection_modifyitems(config, items)


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return report_collectionfinish(config)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminal_summary(terminalreporter)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hooks, on its controller (make test runs pytest -n)
def pytest_configure_node(node) -> None:
    configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    node_collection_finished(node)


def pytest_unconfigure(config: pytest.Config) -> None:
    unconfigure(config)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' promtool, to check what /metrics serves; skips loudly without it."""
    import shutil

    path = shutil.which("promtool")
    if path is None:
        pytest.skip("SKIPPED LOUDLY: promtool not found: apt-get install prometheus (see .ci/packages)")
    return path


@dataclass
class Clock:
    """A clock the test moves by hand (the engine takes time as a parameter)."""

    now: float = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def playbook(text: str, file: str = "pb.yaml") -> Playbook:
    """Build a Playbook from YAML text (dedented)."""
    return parse_playbook(dedent(text), file)


RATE_LIMIT = """
    id: rate-limit-backoff
    when:
      all:
        - log: {source: app, pattern: '429 .*Too Many Requests', at_least: 3, within: 10s}
    confidence: 90
    fix:
      - adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2, max: 5}
    validate:
      window: 10s
      settle: 2s
      expect:
        - log: {source: app, pattern: '429 .*Too Many Requests', at_most: 0}
    cooldown: 1m
"""

SETTINGS = """\
# demo settings
upstream:
  url: "https://api.example.test"   # upstream
  request_delay_s:   0.5    # seconds between calls
  timeout_s: 5
"""


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A target_root with config/settings.yaml and logs/."""
    root = tmp_path / "target"
    (root / "config").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "config" / "settings.yaml").write_text(SETTINGS)
    return root


def write_config(
    tmp_path: Path,
    target: Path,
    *,
    threshold: float = 85,
    extra: str = "",
    playbooks: str = "playbooks",
    api: str = '{listen: "127.0.0.1:0"}',
) -> Config:
    (tmp_path / playbooks).mkdir(exist_ok=True)
    cfg = tmp_path / "suture.yaml"
    cfg.write_text(
        dedent(
            f"""
            target_root: {target}
            allowed_paths: [config/]
            playbooks: ./{playbooks}
            state_dir: ./state
            threshold: {threshold}
            sources:
              app: {{file: {target}/logs/*.log}}
            api: {api}
            """
        )
        + dedent(extra)
    )
    return load_config(cfg, env={})


@pytest.fixture
def config(tmp_path: Path, target: Path) -> Config:
    return write_config(tmp_path, target)

JOINED_FOR_CRASH = """
    id: two-signals
    when:
      all:
        - log: {source: app, pattern: 'a'}
        - log: {source: app, pattern: 'b'}
    confidence: 50
    fix: [{adjust: {file: c.yaml, key: k, add: 1}}]
    validate: {window: 1m, expect: [{log: {source: app, pattern: a}}]}
"""


class Running:
    """A real Sidecar on a thread, with every event it emits recorded."""

    def __init__(self, config: Config, **options) -> None:
        import threading

        from suture.sidecar.runtime import Event, Sidecar

        self.events: list[Event] = []
        self._cond = threading.Condition()
        self.sidecar = Sidecar(config, listeners=[self._record], **options)
        self.thread = threading.Thread(target=self.sidecar.run, daemon=True)

    def _record(self, event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def start(self) -> Running:
        self.thread.start()
        assert self.sidecar.ready.wait(10), "sidecar did not start"
        return self

    def wait_for(self, predicate, timeout: float = 10.0, after: int = 0):
        """The first event from index ``after`` on that satisfies ``predicate``."""
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[after:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such event in: {[(e.kind, e.message) for e in self.events]}")
                self._cond.wait(left)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def stop(self) -> None:
        self.sidecar.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def running():
    started: list[Running] = []

    def start(config: Config, **options) -> Running:
        """A started sidecar; ``options`` go to Sidecar (hooks, effects, clock, ...)."""
        r = Running(config, **options).start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()
