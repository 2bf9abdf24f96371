"""Loading playbooks: good files become the model, every malformed one fails saying where and why.

Fixtures live in ``tests/fixtures/``: ``playbooks/good/`` (valid, exercising the format),
``playbooks/malformed/`` (one mistake per file, expectations in ``malformed/EXPECTED.yaml``) and
``config/`` (a ``suture.yaml`` and the target files its ``allowed_paths`` admit).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from suture.engine.config import Config, load_config
from suture.engine.documents import schema_dir
from suture.engine.errors import DocumentError, Problem
from suture.engine.loader import load_playbooks, parse_playbook
from suture.engine.playbook import (
    Adjust,
    AllOf,
    AnyOf,
    ContainerCondition,
    Examples,
    Exec,
    Learning,
    LogCondition,
    MetricCondition,
    Notify,
    NotOf,
    Playbook,
    ProbeCondition,
    Replace,
    Restart,
    SetValue,
    Validate,
    Where,
    leaves,
)

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = FIXTURES / "playbooks" / "good"
MALFORMED = FIXTURES / "playbooks" / "malformed"
MANY_PROBLEMS = FIXTURES / "playbooks" / "many-problems.yaml"
CONFIG = FIXTURES / "config" / "suture.yaml"
EXPECTED: dict[str, dict[str, Any]] = yaml.safe_load((MALFORMED / "EXPECTED.yaml").read_text("utf-8"))

# ``at`` is not part of a condition's or action's equality, so expected values can be written anywhere.
NOWHERE = Where(file="", line=0, path="")

# file[:line:column]: message[ (at path)], as Problem.render() writes it.
RENDERED = re.compile(r"^(?P<file>.+?)(?::(?P<line>\d+):(?P<column>\d+))?: (?P<message>.+?)(?: \(at (?P<path>[^()]+)\))?$")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(CONFIG, env={})


@pytest.fixture(scope="module")
def good(config: Config) -> dict[str, Playbook]:
    loaded = load_playbooks([GOOD], config)
    return {pb.id: pb for pb in loaded.playbooks}


@pytest.fixture
def linked_config(tmp_path: Path) -> Config:
    """The fixture config in tmp_path, where config/linked.yaml links to a file outside allowed_paths."""
    root = tmp_path / "config"
    shutil.copytree(CONFIG.parent, root)
    outside = root / "target" / "outside"
    outside.mkdir()
    (outside / "secrets.yaml").write_text("admin:\n  enabled: false\n", "utf-8")
    (root / "target" / "config" / "linked.yaml").symlink_to("../outside/secrets.yaml")
    return load_config(root / "suture.yaml", env={})


# --- the fixture config ----------------------------------------------------------------


def test_fixture_config_names_sources_probes_and_allowed_paths(config: Config) -> None:
    """tests/fixtures/config/suture.yaml resolves its paths beside itself and names app, worker, api, db."""
    root = CONFIG.parent.resolve()
    assert (root / "target", (root / "target" / "config",), root / ".suture") == (
        config.target_root,
        config.allowed_paths,
        config.state_dir,
    )
    assert (sorted(config.sources), sorted(config.probes)) == (["app", "worker"], ["api", "db"])
    assert (config.probes["api"].kind, config.probes["db"].kind) == ("http", "postgres")


# --- good playbooks --------------------------------------------------------------------


def test_good_playbooks_load_without_problems(config: Config) -> None:
    """Every file in playbooks/good loads, references and paths included, with no problem."""
    loaded = load_playbooks([GOOD], config)

    assert (
        [p.render() for p in loaded.problems],
        sorted(pb.id for pb in loaded.playbooks),
    ) == ([], ["crash-loop", "db-pool-exhausted", "rate-limit-backoff", "slow-client-sleep"])


GOOD_PARTS = [
    pytest.param(
        "rate-limit-backoff",
        "when",
        AllOf(
            items=(
                LogCondition(
                    source="app",
                    pattern=r"429 .*Too Many Requests for url: (?P<endpoint>\S+)",
                    at_least=5,
                    within=60.0,
                    group_by=("endpoint",),
                    at=NOWHERE,
                ),
                ProbeCondition(name="api", status="healthy", at=NOWHERE),
            )
        ),
        id="rate-limit-backoff.when",
    ),
    pytest.param(
        "rate-limit-backoff",
        "fix",
        (
            Adjust(
                file="config/settings.yaml",
                key="upstream.request_delay_s",
                op="multiply",
                amount=1.5,
                maximum=5.0,
                at=NOWHERE,
            ),
            Restart(container="app", at=NOWHERE),
        ),
        id="rate-limit-backoff.fix",
    ),
    pytest.param(
        "rate-limit-backoff",
        "validate",
        Validate(
            window=120.0,
            settle=5.0,
            expect=(
                LogCondition(source="app", pattern="429 .*Too Many Requests", at_most=0, at=NOWHERE),
                ProbeCondition(name="api", status="healthy", at=NOWHERE),
            ),
        ),
        id="rate-limit-backoff.validate",
    ),
    pytest.param(
        "db-pool-exhausted",
        "when",
        AnyOf(
            items=(
                LogCondition(
                    source="worker", pattern="FATAL: (sorry, )?too many connections", at_least=1, within=60.0, at=NOWHERE
                ),
                ProbeCondition(name="db", status="unhealthy", for_s=30.0, at=NOWHERE),
            )
        ),
        id="db-pool-exhausted.when",
    ),
    pytest.param(
        "db-pool-exhausted",
        "fix",
        (
            Adjust(
                file="config/pool.json",
                key="pool.max_connections",
                op="add",
                amount=10.0,
                minimum=5,
                maximum=200,
                round_to=0,
                at=NOWHERE,
            ),
            Exec(argv=("/usr/local/bin/app-ctl", "reload", "--graceful"), timeout=20.0, at=NOWHERE),
        ),
        id="db-pool-exhausted.fix",
    ),
    pytest.param(
        "db-pool-exhausted",
        "validate",
        Validate(
            window=300.0,
            settle=0.0,
            expect=(
                ProbeCondition(name="db", status="healthy", at=NOWHERE),
                LogCondition(source="worker", pattern="too many connections", at_most=0, at=NOWHERE),
            ),
        ),
        id="db-pool-exhausted.validate",
    ),
    pytest.param(
        "slow-client-sleep",
        "when",
        AllOf(
            items=(
                MetricCondition(name="cpu_percent", above=90, for_s=120.0, at=NOWHERE),
                ProbeCondition(name="api", status="healthy", at=NOWHERE),
                NotOf(item=MetricCondition(name="container.worker.memory_percent", above=95, at=NOWHERE)),
            )
        ),
        id="slow-client-sleep.when",
    ),
    pytest.param(
        "slow-client-sleep",
        "fix",
        (
            Adjust(
                file="config/client.py",
                regex=r"asyncio\.sleep\((?P<value>[0-9.]+)\)",
                op="multiply",
                amount=1.5,
                maximum=3,
                round_to=2,
                at=NOWHERE,
            ),
            SetValue(file="config/settings.yaml", key="features.retry_enabled", value=True, at=NOWHERE),
            Replace(file="config/settings.yaml", regex="^mode: fast$", with_="mode: safe", at=NOWHERE),
            Notify(webhook="https://hooks.example.com/suture", at=NOWHERE),
        ),
        id="slow-client-sleep.fix",
    ),
    pytest.param(
        "slow-client-sleep",
        "validate",
        Validate(
            window=600.0,
            settle=30.0,
            expect=(
                MetricCondition(name="cpu_percent", below=80, at=NOWHERE),
                ProbeCondition(name="api", latency_below_ms=250, at=NOWHERE),
            ),
        ),
        id="slow-client-sleep.validate",
    ),
    pytest.param(
        "crash-loop",
        "when",
        AnyOf(
            items=(
                ContainerCondition(name="worker", restarts_at_least=3, restarts_within=300.0, at=NOWHERE),
                ContainerCondition(name="worker", state="restarting", at=NOWHERE),
            )
        ),
        id="crash-loop.when",
    ),
    pytest.param(
        "crash-loop",
        "fix",
        (Restart(pidfile="/run/app/worker.pid", signal="SIGHUP", at=NOWHERE),),
        id="crash-loop.fix",
    ),
    pytest.param(
        "crash-loop",
        "on_rollback",
        (Notify(webhook="http://alerts.internal:9000/hook", at=NOWHERE),),
        id="crash-loop.on_rollback",
    ),
    pytest.param(
        "crash-loop",
        "validate",
        Validate(
            window=90.0,
            settle=0.5,
            expect=(
                ContainerCondition(name="worker", state="running", at=NOWHERE),
                NotOf(item=ProbeCondition(name="api", latency_above_ms=1000, at=NOWHERE)),
            ),
        ),
        id="crash-loop.validate",
    ),
]


@pytest.mark.parametrize(("playbook_id", "part", "expected"), GOOD_PARTS)
def test_good_playbook_builds_the_model(
    good: dict[str, Playbook], playbook_id: str, part: str, expected: object
) -> None:
    """Conditions, actions and validation of each good playbook become these values (durations in seconds)."""
    assert getattr(good[playbook_id], part) == expected


@pytest.mark.parametrize(
    ("playbook_id", "field", "expected"),
    [
        ("rate-limit-backoff", "severity", "warning"),
        ("rate-limit-backoff", "tags", ("rate_limiting",)),
        ("rate-limit-backoff", "confidence", 70.0),
        ("rate-limit-backoff", "cooldown", 600.0),
        ("rate-limit-backoff", "max_attempts", 3),
        ("rate-limit-backoff", "mode", "auto"),
        ("rate-limit-backoff", "on_inconclusive", "rollback"),
        ("rate-limit-backoff", "group_by", ("endpoint",)),
        (
            "rate-limit-backoff",
            "examples",
            Examples(
                fires=(
                    "2026-11-25T10:00:01 ERROR 429 Client Error: Too Many Requests for url: https://api.example.com/orders",
                ),
                ignores=("2026-11-25T10:00:01 INFO GET /orders 200",),
            ),
        ),
        ("slow-client-sleep", "severity", "critical"),
        ("slow-client-sleep", "tags", ("cpu", "polling")),
        ("slow-client-sleep", "cooldown", 3600.0),
        ("slow-client-sleep", "max_attempts", 5),
        ("slow-client-sleep", "mode", "shadow"),
        ("slow-client-sleep", "on_inconclusive", "keep"),
        ("crash-loop", "severity", "info"),
        ("crash-loop", "cooldown", 1800.0),
        ("crash-loop", "max_attempts", 2),
        ("crash-loop", "mode", "ask"),
        ("crash-loop", "learning", Learning(model="linear", prior_weight=5.0)),
    ],
)
def test_good_playbook_settings(good: dict[str, Playbook], playbook_id: str, field: str, expected: object) -> None:
    """The settings written in each good playbook, durations in seconds."""
    assert getattr(good[playbook_id], field) == expected


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("severity", "warning"),
        ("tags", ()),
        ("on_rollback", ()),
        ("cooldown", 600.0),
        ("max_attempts", 3),
        ("mode", "auto"),
        ("on_inconclusive", "rollback"),
        ("learning", None),
        ("examples", Examples()),
    ],
)
def test_defaults_are_filled(good: dict[str, Playbook], field: str, expected: object) -> None:
    """A playbook that leaves a setting out (db-pool-exhausted) gets its documented default."""
    assert getattr(good["db-pool-exhausted"], field) == expected


def test_log_condition_in_when_defaults_to_at_least_one_within_60s(good: dict[str, Playbook]) -> None:
    """In `when`, a log condition without at_least/within fires on one line within 60s."""
    log = good["db-pool-exhausted"].when.items[0]

    assert (log.at_least, log.at_most, log.within) == (1, None, 60.0)


def test_log_condition_in_expect_defaults_to_at_most_zero_over_the_window(good: dict[str, Playbook]) -> None:
    """In `validate.expect`, a log condition without bounds means no line at all, over the whole window."""
    log = good["db-pool-exhausted"].validate.expect[1]

    assert (log.at_least, log.at_most, log.within) == (None, 0, None)


def test_playbook_remembers_its_file_and_digest(good: dict[str, Playbook]) -> None:
    """A playbook's digest is the sha256 of its file's bytes: the playbook's version."""
    playbook = good["crash-loop"]
    path = GOOD / "crash-loop.yaml"

    assert (Path(playbook.file).resolve(), playbook.digest) == (path.resolve(), hashlib.sha256(path.read_bytes()).hexdigest())


def test_conditions_remember_where_they_were_written(good: dict[str, Playbook]) -> None:
    """Each condition keeps its file, line and YAML path for messages at run time."""
    log = good["rate-limit-backoff"].when.items[0]

    assert (log.at.line, log.at.path) == (9, "when.all[0].log")


# --- signals -----------------------------------------------------------------------------


def test_identical_leaf_conditions_share_a_signal(good: dict[str, Playbook]) -> None:
    """`probe: {name: api, status: healthy}` in two playbooks is one signal, evaluated once."""
    in_rate_limit = good["rate-limit-backoff"].when.items[1]
    in_slow_client = good["slow-client-sleep"].when.items[1]

    assert in_rate_limit.signal == in_slow_client.signal


def test_different_leaf_conditions_have_different_signals(good: dict[str, Playbook]) -> None:
    """Across every good playbook, conditions that differ in anything but position never share a signal."""
    distinct = {leaf for pb in good.values() for cond in (pb.when, *pb.validate.expect) for leaf in leaves(cond)}

    assert len(distinct) == len({leaf.signal for leaf in distinct})


# --- problems ------------------------------------------------------------------------------


def test_problem_renders_file_line_column_message_and_path() -> None:
    """A problem reads `file:line:col: message (at path)`."""
    problem = Problem(file="playbooks/db.yaml", line=14, column=7, path="when.all[0].log", message="'at_least' must be >= 1")

    assert problem.render() == "playbooks/db.yaml:14:7: 'at_least' must be >= 1 (at when.all[0].log)"


def test_problem_about_a_whole_file_renders_without_position() -> None:
    """A problem with line 0 (an empty file, an alias bomb) names only the file."""
    problem = Problem(file="playbooks/db.yaml", line=0, column=0, path="", message="the document is empty")

    assert problem.render() == "playbooks/db.yaml: the document is empty"


def test_problem_at_the_top_level_renders_without_path() -> None:
    """A problem of the top-level mapping (a missing key) has no `(at ...)`."""
    problem = Problem(file="playbooks/db.yaml", line=1, column=1, path="", message="missing required key 'id'")

    assert problem.render() == "playbooks/db.yaml:1:1: missing required key 'id'"


@pytest.mark.parametrize("entry", sorted(EXPECTED))
def test_malformed_playbook_is_reported(entry: str, linked_config: Config) -> None:
    """Loading fails, and a rendered problem names the file, the line, the YAML path and what is wrong."""
    expected = EXPECTED[entry]
    reported = expected.get("reported_in", entry)
    message = expected["message"]
    substrings = [message] if isinstance(message, str) else message

    loaded = load_playbooks([MALFORMED / entry], linked_config)

    assert [pb.file for pb in loaded.playbooks if pb.file.endswith(reported)] == []
    found = []
    for problem in loaded.problems:
        parts = RENDERED.match(problem.render())
        assert parts is not None, problem.render()
        if parts["file"].endswith(f"/{reported}") and all(s in parts["message"] for s in substrings):
            found.append((int(parts["line"] or 0), parts["path"] or ""))
    assert found == [(expected["line"], expected["path"])], "\n".join(p.render() for p in loaded.problems)


def test_every_malformed_fixture_has_an_expectation() -> None:
    """Each file (or folder) in playbooks/malformed has its entry in EXPECTED.yaml, and each entry its file."""
    on_disk = {p.name for p in MALFORMED.iterdir() if p.name != "EXPECTED.yaml"}

    assert sorted(on_disk) == sorted(EXPECTED)


def test_every_problem_in_a_file_is_reported() -> None:
    """Schema problems and the checks after the schema are reported together, not just the first."""
    with pytest.raises(DocumentError) as caught:
        parse_playbook(MANY_PROBLEMS.read_bytes(), "many-problems.yaml")

    assert [(p.line, p.path) for p in caught.value.problems] == [
        (3, "severity"),
        (6, "when.all[0].log.at_leats"),
        (7, "when.all[1].log.pattern"),
        (8, "when.all[2].log.group_by[0]"),
        (11, "fix[0].adjust.min"),
        (14, "validate.settle"),
    ]


def test_folder_reports_every_bad_file_and_keeps_the_good_playbooks(tmp_path: Path, config: Config) -> None:
    """A folder of good and bad files: each bad file is reported, every good playbook still loads."""
    for path in GOOD.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    bad = [
        "yaml-unclosed-quote.yaml",
        "not-utf8.yaml",
        "bad-severity.yaml",
        "adjust-min-above-max.yaml",
        "unknown-source.yaml",
        "outside-allowed-paths.yaml",
    ]
    for name in bad:
        shutil.copy(MALFORMED / name, tmp_path / name)
    shutil.copy(GOOD / "crash-loop.yaml", tmp_path / "zz-crash-loop-copy.yaml")  # its id is taken

    loaded = load_playbooks([tmp_path], config)

    assert (
        sorted([*bad, "zz-crash-loop-copy.yaml"]),
        ["crash-loop", "db-pool-exhausted", "rate-limit-backoff", "slow-client-sleep"],
    ) == (
        sorted({Path(p.file).name for p in loaded.problems}),
        sorted(pb.id for pb in loaded.playbooks),
    )


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["playbook.schema.json", "config.schema.json"])
def test_bundled_schema_is_valid_json_schema_2020_12(name: str) -> None:
    """schemas/*.json declare JSON Schema 2020-12 and pass its meta-schema."""
    schema = json.loads((schema_dir() / name).read_text("utf-8"))

    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_bundled_schema_is_checked() -> None:
    """The schema check above covers every file in schemas/."""
    assert sorted(p.name for p in schema_dir().glob("*.json")) == ["config.schema.json", "playbook.schema.json"]
