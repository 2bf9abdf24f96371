"""One core, two drivers: what `suture replay` decides on a recorded stream is what `suture run` decides on it.

The live side is the real sidecar (threads, the inotify tailer, the queue, a DuckDB file), its
clock set by the test to each line's time, and its windows aged to it (a tick), just before the
line is appended to the log; the
replay side reads the same lines, with those times written in them, from a file. Both hand
their lines to :class:`~suture.sidecar.core.Core`; the test compares the two decision lists.
"""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from suture.engine.config import load_config
from suture.engine.loader import load_playbooks
from suture.sidecar.core import Decided
from suture.sidecar.replay import Firing, LogFile, Replay
from suture.sidecar.runtime import Sidecar

from .conftest import dedent

PLAYBOOKS = {
    # proposes (confidence under the threshold), then cools down for 20 s
    "burst.yaml": """
        id: error-burst
        when: {log: {source: app, pattern: 'ERROR', at_least: 2, within: 10s}}
        confidence: 40
        cooldown: 20s
        fix: [{adjust: {file: config/app.yaml, key: workers, add: 1}}]
        validate: {window: 30s, expect: [{log: {source: app, pattern: ERROR, at_most: 0}}]}
    """,
    # one firing per user: grouped windows, shadow mode
    "logins.yaml": """
        id: failed-logins
        mode: shadow
        when: {log: {source: app, pattern: 'login failed user=(?P<user>\\w+)', group_by: [user], at_least: 2, within: 5s}}
        confidence: 90
        cooldown: 8s
        fix: [{adjust: {file: config/app.yaml, key: workers, add: 1}}]
        validate: {window: 30s, expect: [{log: {source: app, pattern: login failed, at_most: 0}}]}
    """,
    # both at once: all of two log conditions
    "both.yaml": """
        id: timeouts-and-errors
        when:
          all:
            - log: {source: app, pattern: 'timeout', at_least: 2, within: 15s}
            - log: {source: app, pattern: 'ERROR', at_least: 1, within: 15s}
        confidence: 60
        cooldown: 10s
        fix: [{adjust: {file: config/app.yaml, key: workers, add: 1}}]
        validate: {window: 30s, expect: [{log: {source: app, pattern: timeout, at_most: 0}}]}
    """,
}
TEXTS = ["ERROR db unreachable", "ERROR timeout talking to cache", "WARN timeout on /api/orders",
         "login failed user=ann", "login failed user=bob", "login failed user=cy"]
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def stream(seed: int, n: int = 120) -> list[tuple[float, str]]:
    """Bursts of lines 0.6-3 s apart, and quiet gaps that let the windows drain (the live core ticks every
    0.5 s of its clock, so no two lines share a tick)."""
    rnd = random.Random(seed)
    ms, out = 0, []
    for _ in range(n):
        ms += rnd.randint(12_000, 25_000) if rnd.random() < 0.15 else rnd.randint(600, 3_000)
        out.append((START + ms / 1000, rnd.choice(TEXTS)))  # whole milliseconds, as the log writes them
    return out


def stamp(at: float) -> str:
    d = datetime.fromtimestamp(at, UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


@pytest.fixture
def world(tmp_path: Path) -> Path:
    return make_world(tmp_path)


def make_world(tmp_path: Path) -> Path:
    (tmp_path / "target" / "config").mkdir(parents=True)
    (tmp_path / "target" / "config" / "app.yaml").write_text("workers: 2\n")
    (tmp_path / "target" / "logs").mkdir()
    (tmp_path / "target" / "logs" / "app.log").write_text("")
    (tmp_path / "playbooks").mkdir()
    for name, text in PLAYBOOKS.items():
        (tmp_path / "playbooks" / name).write_text(dedent(text))
    (tmp_path / "suture.yaml").write_text(
        "target_root: ./target\nallowed_paths: [config/]\nplaybooks: ./playbooks\nstate_dir: ./state\n"
        "sources: {app: {file: ./target/logs/app.log}}\napi: {enabled: false}\nthreshold: 85\n")
    return tmp_path


def matches_per_line(root: Path, text: str) -> int:
    """How many playbook log conditions the line matches (what the core's match counters add up)."""
    config = load_config(root / "suture.yaml", env={})
    patterns = [leaf for pb in load_playbooks([config.playbooks], config).playbooks
                for leaf in _log_leaves(pb.when)]
    return sum(1 for leaf in patterns if re.search(leaf.pattern, text))


def _log_leaves(when):
    from suture.engine.playbook import LogCondition, leaves

    return [leaf for leaf in leaves(when) if isinstance(leaf, LogCondition)]


def live(root: Path, lines: list[tuple[float, str]]) -> list[Decided]:
    now = [START]
    decided: list[Decided] = []
    sidecar = Sidecar(load_config(root / "suture.yaml", env={}), clock=lambda: now[0], decisions=decided.append)
    thread = threading.Thread(target=sidecar.run, daemon=True)
    thread.start()
    assert sidecar.ready.wait(10)
    log = root / "target" / "logs" / "app.log"
    expected = 0
    try:
        for n, (at, text) in enumerate(lines, start=1):
            now[0] = at
            # time passes before the line comes: the core's periodic tick (every 0.5 s of a real clock) ages
            # the windows; on this test's clock it is asked for, at the line's time, as replay does
            sidecar.call(lambda at=at: sidecar.tick(at))
            with log.open("a") as fh:
                fh.write(f"{stamp(at)} {text}\n")
            expected += matches_per_line(root, text)
            deadline = time.monotonic() + 10
            while sum((view := sidecar.snapshot()).condition_matches.values()) < expected:  # the core took the line
                assert time.monotonic() < deadline, f"the sidecar did not read {text!r}"
                time.sleep(0.002)
            counters = view.sources["app"].counters
            assert (counters["lines"], counters["partial_flushes"]) == (n, 0), (n, text, dict(counters))
    finally:
        sidecar.stop.set()
        thread.join(10)
    return decided


def replayed(root: Path, lines: list[tuple[float, str]]) -> list[Firing]:
    recorded = root / "recorded.log"
    recorded.write_text("".join(f"{stamp(at)} {text}\n" for at, text in lines))
    config = load_config(root / "suture.yaml", env={})
    firings: list[Firing] = []
    Replay(config, load_playbooks([config.playbooks], config).playbooks, on_firing=firings.append).run(
        [LogFile(recorded, "app")])
    return firings


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_and_live_decide_the_same_on_one_recorded_stream(world, seed):
    lines = stream(seed)
    from_live = [(round(d.at, 3), d.playbook.id, d.match.key, d.decision.verdict, d.decision.reason)
                 for d in live(world, lines)]
    from_replay = [(round(f.at, 3), f.playbook_id, f.key, f.verdict, f.reason) for f in replayed(world, lines)]
    assert len(from_live) >= 6, "the stream should make every playbook fire, and some cool down"
    assert {v for *_, v, _r in from_live} >= {"propose", "shadow", "skip"}
    assert from_live == from_replay
