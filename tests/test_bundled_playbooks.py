"""Every bundled playbook (playbooks/*.yaml): loads, self-tests, compiles, plans, and fires end to end.

They are checked against tests/fixtures/bundled/: a suture.yaml naming what the bundled
playbooks use (source ``app``, probe ``api``) and a target whose config/settings.yaml holds
every key they edit. The end-to-end checks run each ``examples`` line through a real
SignalBoard and a real durable_rules Host, with the probe, metric and container leaves
of the line's alternative of ``when`` made to hold (a trend by a series that trends, an
anomaly by a baseline and a jump, a log anomaly by a quiet hour and a burst).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from suture.engine.actions import plan_fix
from suture.engine.config import Config, load_config
from suture.engine.errors import DocumentError
from suture.engine.loader import load_playbooks, parse_playbook
from suture.engine.playbook import (
    ContainerCondition,
    Leaf,
    LogCondition,
    MetricCondition,
    Playbook,
    ProbeCondition,
)
from suture.engine.rules import Match, Rules, to_dnf
from suture.engine.selftest import firing_log_conditions, regex_problems, run_examples
from suture.sidecar.signals import SignalBoard, Transition

BUNDLED = Path(__file__).parents[1] / "playbooks"
FIXTURE = Path(__file__).parent / "fixtures" / "bundled"
FILES = sorted(BUNDLED.glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../schemas/playbook.schema.json"
T0 = 1_790_000_000.0
LAST_GOOD = b"# the last settings a fix validated\nupstream:\n  request_delay_s: 0.5\n"


# --- collection: parametrize from the files themselves ------------------------------------------


def _raw(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text("utf-8"))
    return data if isinstance(data, dict) else {}


def _examples(kind: str) -> list[Any]:
    return [
        pytest.param(path, line, id=f"{path.stem}-{i}")
        for path in FILES
        for i, line in enumerate(_raw(path).get("examples", {}).get(kind, []))
    ]


def _edits_files(path: Path) -> bool:
    return any(isinstance(body, dict) and "file" in body for action in _raw(path).get("fix", []) for body in action.values())


def _signal_only_alternatives(path: Path) -> bool:
    """Whether ``when`` has an alternative made only of probe / metric / container leaves."""
    try:
        pb = parse_playbook(path.read_bytes(), str(path))
    except DocumentError:
        return False  # test_loads_against_the_fixture_config says why
    return any(not any(isinstance(leaf, LogCondition) for leaf in pos) for pos, _ in to_dnf(pb.when))


def _predicts(path: Path) -> bool:
    try:
        pb = parse_playbook(path.read_bytes(), str(path))
    except DocumentError:
        return False
    return any(isinstance(leaf, MetricCondition) and leaf.predict for pos, _ in to_dnf(pb.when) for leaf in pos)


FILE_PARAMS = [pytest.param(path, id=path.stem) for path in FILES]
EDITING = [pytest.param(path, id=path.stem) for path in FILES if _edits_files(path)]
SIGNAL_ONLY = [pytest.param(path, id=path.stem) for path in FILES if _signal_only_alternatives(path)]
PREDICTING = [pytest.param(path, id=path.stem) for path in FILES if _predicts(path)]


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(FIXTURE / "suture.yaml", env={})


@pytest.fixture(scope="module")
def bundled(config: Config) -> tuple[Playbook, ...]:
    return load_playbooks([BUNDLED], config).playbooks


def load(path: Path, config: Config) -> Playbook:
    result = load_playbooks([path], config)
    assert [p.render() for p in result.problems] == []
    (pb,) = result.playbooks
    return pb


def matches(leaf: LogCondition, line: str) -> bool:
    """The line matches the leaf's pattern and captures every group_by group (as the sidecar needs)."""
    m = re.search(leaf.pattern, line)
    return m is not None and all(m.group(name) for name in leaf.group_by)


def log_leaves(leaves: Iterable[Leaf]) -> list[LogCondition]:
    return [leaf for leaf in leaves if isinstance(leaf, LogCondition)]


class Wiring:
    """One playbook on a real SignalBoard and a real durable_rules Host, on a clock that only moves forward."""

    def __init__(self, pb: Playbook) -> None:
        self.board = SignalBoard([pb])
        self.rules = Rules()
        self.now = T0
        self.matches: list[Match] = list(self.rules.load([pb]))
        self.apply(self.board.start(self.now))

    def apply(self, transitions: Iterable[Transition]) -> list[Match]:
        out: list[Match] = []
        for t in transitions:
            out += self.rules.assert_fact(t.fact) if t.holds else self.rules.retract_fact(t.fact)
        self.matches += out
        return out

    def satisfy(self, leaf: Leaf) -> None:
        """Make a probe, metric or container leaf hold, for as long as its ``for`` asks."""
        if isinstance(leaf, ContainerCondition) and leaf.restarts_at_least is not None:
            state = leaf.state or "running"
            step = (leaf.restarts_within or 600.0) / (leaf.restarts_at_least + 1)
            for _ in range(leaf.restarts_at_least):  # polls that each saw a new start, inside the window
                self.now += step
                self.apply(self.board.container(leaf.name, state, self.now, restarted=True))
            return
        if isinstance(leaf, MetricCondition) and (leaf.predict or leaf.anomaly):
            self.trend(leaf)
            return
        sustained = getattr(leaf, "for_s", 0.0)
        for at in (self.now, self.now + sustained):
            self.apply(self._reading(leaf, at))
        self.now += sustained

    def _reading(self, leaf: Leaf, at: float) -> list[Transition]:
        if isinstance(leaf, ProbeCondition):
            above, below = leaf.latency_above_ms, leaf.latency_below_ms
            latency = (above + 1 if below is None else (above + below) / 2) if above is not None else (
                below - 1 if below is not None else 10.0
            )
            return self.board.probe(leaf.name, leaf.status != "unhealthy", latency, at)
        if isinstance(leaf, MetricCondition):
            value = leaf.above + 1 if leaf.above is not None else (leaf.below or 0) - 1
            return self.board.metric(leaf.name, value, at, leaf.labels)
        assert isinstance(leaf, ContainerCondition) and leaf.state is not None
        return self.board.container(leaf.name, leaf.state, at)

    def trend(self, leaf: MetricCondition) -> None:
        """Make a ``predict`` or ``anomaly`` leaf hold: a series that trends or jumps as the leaf looks for.

        predict: 40 samples over ``over`` on a straight line that ends one unit short of the bound and
        would cross it at half the horizon; anomaly: a baseline alternating by 1 around 100, then a value
        far outside it (above, or below for ``direction: below``)."""
        if leaf.predict is not None:
            p, span = leaf.predict, leaf.over or 600.0
            up = p.above is not None
            bound = p.above if p.above is not None else p.below
            assert bound is not None
            slope = (2.0 / p.within) * (1 if up else -1)
            end = bound - 1 if up else bound + 1
            for i in range(41):
                t = span * i / 40
                self.apply(self.board.metric(leaf.name, end - slope * (span - t), self.now + t, leaf.labels))
            self.now += span
        else:
            assert leaf.anomaly is not None
            steps = 80
            for i in range(steps):
                self.apply(self.board.metric(leaf.name, 100.0 + (i % 2), self.now, leaf.labels))
                self.now += leaf.anomaly.baseline / steps
            jump = 100.0 * (1 if leaf.anomaly.direction != "below" else -0.99)
            self.apply(self.board.metric(leaf.name, 100.0 + jump, self.now, leaf.labels))

    def quiet(self, seconds: float, step: float) -> None:
        """Let ``seconds`` pass without a line, ticking every ``step`` (a log anomaly's baseline of empty buckets)."""
        for _ in range(int(seconds / step) + 2):
            self.now += step
            self.apply(self.board.tick(self.now))

    def lines(self, source: str, text: str, count: int, within: float) -> list[Match]:
        """Feed ``text`` ``count`` times, evenly spread inside ``within`` seconds; the matches they cause."""
        step = within / (count + 1)
        out: list[Match] = []
        for _ in range(count):
            self.now += step
            out += self.apply(self.board.line(source, text, self.now)[0])
        return out

    def close(self) -> None:
        self.rules.close()


@pytest.fixture
def wirings() -> Iterator[list[Wiring]]:
    made: list[Wiring] = []
    yield made
    for w in made:
        w.close()


def feed_alternative(wiring: Wiring, positive: tuple[Leaf, ...], line: str, extra: int = 0) -> list[Match]:
    """Make the non-log leaves of one alternative hold, then feed ``line`` as often as its log leaves need."""
    for leaf in positive:
        if not isinstance(leaf, LogCondition):
            wiring.satisfy(leaf)
    logs = log_leaves(positive)
    count = max(leaf.at_least or 1 for leaf in logs) + extra
    within = min(leaf.within or 60.0 for leaf in logs)
    for leaf in logs:  # an anomaly: a quiet baseline, then more lines in one bucket than sigma deviations allow
        if leaf.anomaly is not None:
            bucket = max(10.0, leaf.anomaly.baseline / 60)
            wiring.quiet(leaf.anomaly.baseline, bucket)
            count, within = max(count, math.ceil(leaf.anomaly.sigma) + 3), min(within, bucket / 2)
    return wiring.lines(logs[0].source, line, count, within)


# --- each file on its own -----------------------------------------------------------------------


@pytest.mark.parametrize("path", FILE_PARAMS)
def test_loads_against_the_fixture_config(path: Path, config: Config) -> None:
    """The playbook is schema-valid, every name it uses is in the config, and its id is its file name."""
    result = load_playbooks([path], config)
    assert ([p.render() for p in result.problems], [pb.id for pb in result.playbooks]) == ([], [path.stem])


@pytest.mark.parametrize("path", FILE_PARAMS)
def test_first_line_is_the_schema_modeline(path: Path) -> None:
    """Editors find the schema from the first line."""
    assert path.read_text("utf-8").splitlines()[0] == MODELINE


@pytest.mark.parametrize("path", FILE_PARAMS)
def test_has_lines_that_fire_and_lines_that_do_not(path: Path, config: Config) -> None:
    """Every bundled playbook documents its pattern with both kinds of examples."""
    pb = load(path, config)
    assert (len(pb.examples.fires) > 0, len(pb.examples.ignores) > 0) == (True, True)


@pytest.mark.parametrize("path", FILE_PARAMS)
def test_examples_pass(path: Path, config: Config) -> None:
    """`suture check --run-examples` would pass: fires lines match, ignores lines do not."""
    assert [r.problem.render() for r in run_examples(load(path, config)) if r.problem is not None] == []


@pytest.mark.parametrize("path", FILE_PARAMS)
def test_patterns_do_not_backtrack_catastrophically(path: Path, config: Config) -> None:
    """Every regex survives the hostile 10 KiB lines of `suture check`."""
    assert [p.render() for p in regex_problems(load(path, config))] == []


@pytest.mark.parametrize("path", FILE_PARAMS)
def test_compiles_into_durable_rules(path: Path, config: Config) -> None:
    """durable_rules accepts the compiled playbook, and nothing fires before any signal."""
    rules = Rules()
    try:
        assert rules.load([load(path, config)]) == []
    finally:
        rules.close()


@pytest.mark.parametrize("path", EDITING)
def test_file_edits_plan_a_change(path: Path, config: Config) -> None:
    """Against the fixture target, every file the fix edits gets a planned change (restore from a known good version)."""
    pb = load(path, config)
    plan = plan_fix(pb.fix, target_root=config.target_root, allowed=config.allowed_paths,
                    last_good=lambda _file: (LAST_GOOD, "test"))
    assert sorted({c.file for c in plan.changes}) == sorted(pb.files())


# --- end to end, line by line ---------------------------------------------------------------------


@pytest.mark.parametrize(("path", "line"), _examples("fires"))
def test_fires_line_fires_end_to_end(path: Path, line: str, config: Config, wirings: list[Wiring]) -> None:
    """Fed at_least times inside the window, with the rest of its alternative holding, the line fires the playbook."""
    pb = load(path, config)
    alternatives = [
        pos for pos, neg in to_dnf(pb.when)
        if log_leaves(pos) and all(matches(leaf, line) for leaf in log_leaves(pos))
        and not any(matches(leaf, line) for leaf in log_leaves(neg))
    ]
    assert alternatives, "no alternative of `when` can be completed by this line"
    fired = []
    for pos in alternatives:
        wirings.append(Wiring(pb))
        fired.append(pb.id in [m.playbook_id for m in feed_alternative(wirings[-1], pos, line)])
    assert fired == [True] * len(alternatives)


@pytest.mark.parametrize(("path", "line"), _examples("ignores"))
def test_ignores_line_never_fires(path: Path, line: str, config: Config, wirings: list[Wiring]) -> None:
    """Fed more often than any window needs, with every other leaf holding, the line never fires the playbook."""
    pb = load(path, config)
    fired: list[Match] = []
    for pos, _neg in to_dnf(pb.when):
        if log_leaves(pos):
            wirings.append(Wiring(pb))
            fired += feed_alternative(wirings[-1], pos, line, extra=5)
    assert fired == []


@pytest.mark.parametrize("path", SIGNAL_ONLY)
def test_alternatives_without_logs_fire_on_their_signals(path: Path, config: Config, wirings: list[Wiring]) -> None:
    """An alternative of metric / probe / container leaves fires once they hold for their `for`."""
    pb = load(path, config)
    fired = []
    for pos, _neg in to_dnf(pb.when):
        if not log_leaves(pos):
            wirings.append(w := Wiring(pb))
            for leaf in pos:
                w.satisfy(leaf)
            fired.append(pb.id in [m.playbook_id for m in w.matches])
    assert fired == [True] * len(fired)


@pytest.mark.parametrize("path", PREDICTING)
@pytest.mark.parametrize("shape", ["flat", "falling"])
def test_a_prediction_never_fires_on_a_flat_or_falling_series(path: Path, shape: str, config: Config,
                                                              wirings: list[Wiring]) -> None:
    """Three windows of a series one unit short of the bound, flat or moving away from it, fire nothing."""
    pb = load(path, config)
    for pos, _neg in to_dnf(pb.when):
        for leaf in pos:
            if isinstance(leaf, MetricCondition) and leaf.predict is not None:
                wirings.append(w := Wiring(pb))
                p, span = leaf.predict, leaf.over or 600.0
                away = (-1 if p.above is not None else 1) * (0.0 if shape == "flat" else 10.0 / span)
                start = (p.above - 1) if p.above is not None else (p.below or 0) + 1
                for i in range(121):
                    t = 3 * span * i / 120
                    w.apply(w.board.metric(leaf.name, start + away * t, w.now + t, leaf.labels))
                assert [m.playbook_id for m in w.matches] == []


# --- the set ----------------------------------------------------------------------------------


def test_whole_set_loads_and_compiles_together(config: Config) -> None:
    """The bundled folder loads as one set (ids unique) and compiles into one ruleset."""
    result = load_playbooks([BUNDLED], config)
    rules = Rules()
    try:
        loaded = rules.load(result.playbooks)
    finally:
        rules.close()
    assert ([p.render() for p in result.problems], len(result.playbooks), loaded) == ([], len(FILES), [])


def test_whole_set_builds_its_matchers_quickly(config: Config) -> None:
    """The sidecar's matchers for the whole set (hyperscan databases) build in seconds, not minutes.

    Hyperscan's compile time explodes with large bounded repeats (``[^\\n]{0,200}``): one such
    pattern took two minutes. The bound is loose on purpose (a shared CI machine); it is there
    to catch that failure mode, not to benchmark.
    """
    playbooks = load_playbooks([BUNDLED], config).playbooks
    started = time.perf_counter()
    SignalBoard(playbooks)
    assert time.perf_counter() - started < 10.0


# The error categories the replaced system's error detector knew, each with the bundled playbook
# that recognises it and one of that playbook's `fires` examples.
CATEGORIES = {
    "HTTP 429": ("rate-limit-backoff", "2026-11-25T10:00:01Z ERROR 429 Client Error: Too Many Requests for url: https://api.example.com/v1/orders"),
    "HTTP 500": ("upstream-5xx", "requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: https://api.example.com/v1/orders"),
    "HTTP 502": ("upstream-5xx", "requests.exceptions.HTTPError: 502 Server Error: Bad Gateway for url: https://api.example.com/v1/orders"),
    "HTTP 503": ("upstream-5xx", "2026-11-25T10:00:02Z ERROR httpx.HTTPStatusError: Server error '503 Service Unavailable' for url 'https://api.example.com/v1/orders'"),
    "HTTP 504": ("api-timeout", "2026-11-25T10:00:03Z ERROR 504 Server Error: Gateway Timeout for url: https://api.example.com/v1/orders"),
    "Python traceback header": ("unhandled-exception", "Traceback (most recent call last):"),
    "Python exception (final line)": ("unhandled-exception", "ValueError: invalid literal for int() with base 10: 'abc'"),
    "chained exception (final line)": ("unhandled-exception", "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not connect to server: Connection refused"),
    "database OperationalError": ("db-connection-errors", "psycopg2.OperationalError: could not connect to server: Connection refused"),
    "database IntegrityError": ("unhandled-exception", "sqlalchemy.exc.IntegrityError: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint \"users_email_key\""),
    "database DatabaseError": ("unhandled-exception", "django.db.utils.DatabaseError: value too long for type character varying(64)"),
    "rate limit": ("rate-limit-backoff", "2026-11-25T10:00:03Z WARNING upstream rate limit exceeded, retry after 2s"),
    "upstream API error": ("upstream-5xx", "aiohttp.client_exceptions.ClientResponseError: 502, message='Bad Gateway', url=URL('https://api.example.com/v1/orders')"),
}


@pytest.mark.parametrize(("category", "expected"), list(CATEGORIES.items()), ids=list(CATEGORIES))
def test_error_category_is_recognised(category: str, expected: tuple[str, str], bundled: tuple[Playbook, ...]) -> None:
    """Each error category of the replaced system is a `fires` example of a bundled playbook whose log conditions match it."""
    playbook_id, line = expected
    recognising = [
        pb.id for pb in bundled
        if line in pb.examples.fires and any(matches(leaf, line) for leaf in firing_log_conditions(pb))
    ]
    assert playbook_id in recognising
