"""suture replay: recorded logs through the playbooks, on the logs' own clock, touching nothing."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from suture.engine.config import Config, load_config
from suture.engine.playbook import Playbook
from suture.sidecar.replay import (
    Firing,
    LogFile,
    Progress,
    Replay,
    ReplayError,
    Summary,
    assign_sources,
    read_chunks,
)

from .conftest import RATE_LIMIT, dedent, playbook, write_config

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC).timestamp()
TOO_MANY = "ERROR 429 Client Error: Too Many Requests for url: https://api.example.test/v1/orders"


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_log(path: Path, errors_at: list[float], *, minutes: int = 10) -> Path:
    """An INFO line every 5 s for ``minutes``, and a 429 line at each of ``errors_at`` (seconds from T0)."""
    events = [(s, "INFO GET /orders 200") for s in range(0, minutes * 60, 5)] + [(s, TOO_MANY) for s in errors_at]
    path.write_text("".join(f"{stamp(s)} {text}\n" for s, text in sorted(events)))
    return path


def replay(config: Config, files: list[LogFile], playbooks: list[Playbook] | None = None,
           **options: object) -> tuple[list[Firing], Summary]:
    firings: list[Firing] = []
    pbs = playbooks if playbooks is not None else [playbook(RATE_LIMIT)]
    summary = Replay(config, pbs, on_firing=firings.append, **options).run(files)  # type: ignore[arg-type]
    return firings, summary


def cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "suture.sidecar.cli", "replay", *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def cli_setup(tmp_path: Path, target: Path) -> Path:
    """A suture.yaml with the rate-limit playbook in its playbooks folder; returns the config path."""
    write_config(tmp_path, target)
    (tmp_path / "playbooks" / "rate-limit.yaml").write_text(dedent(RATE_LIMIT))
    return tmp_path / "suture.yaml"


def test_a_burst_of_429s_fires_at_its_time_with_the_planned_edit(config: Config, target: Path) -> None:
    """Three 429s within 10 s fire the playbook at the third line's timestamp, showing the exact edit."""
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    firings, summary = replay(config, [LogFile(log, "app")])
    assert [(f.at, f.playbook_id, f.verdict) for f in firings] == [(T0 + 306, "rate-limit-backoff", "apply")]
    change = firings[0].changes[0]
    assert (
        change["file"], change["target"], change["old"], change["new"]) == ("config/settings.yaml", "upstream.request_delay_s", "0.5", "1.0")
    assert firings[0].count == 3
    assert (summary.lines, summary.matched_lines) == (123, 3)


def test_lines_spread_wider_than_the_window_do_not_fire(config: Config, target: Path) -> None:
    """Time comes from the timestamps: three 429s 20 s apart never fill a 10 s window."""
    log = write_log(target / "logs" / "app.log", [100, 120, 140, 160])
    firings, summary = replay(config, [LogFile(log, "app")])
    assert firings == []
    assert summary.matched_lines == 4


def test_cooldown_suppresses_a_second_firing(config: Config, target: Path) -> None:
    """A second burst within the 1 m cooldown is a skip; a third burst after it fires again."""
    log = write_log(target / "logs" / "app.log", [60, 61, 62, 90, 91, 92, 200, 201, 202])
    firings, _ = replay(config, [LogFile(log, "app")])
    assert [(f.at, f.verdict) for f in firings] == [(T0 + 62, "apply"), (T0 + 92, "skip"), (T0 + 202, "apply")]
    assert firings[1].reason.startswith("cooldown: last fix 30s ago")


def test_lines_without_a_timestamp_take_the_previous_time(config: Config, target: Path) -> None:
    """Continuation lines (a traceback) count at the time of the last stamped line before them."""
    log = target / "logs" / "app.log"
    log.write_text(f"{stamp(0)} INFO start\n{stamp(50)} ERROR request failed\n"
                   + f"  {TOO_MANY}\n" * 3 + f"{stamp(70)} INFO later\n")
    firings, _ = replay(config, [LogFile(log, "app")])
    assert [f.at for f in firings] == [T0 + 50]


def test_files_are_merged_in_time_order(config: Config, target: Path) -> None:
    """A rotated file given after the current one still replays first."""
    old = write_log(target / "logs" / "app.log.1", [100, 595], minutes=10)
    new = target / "logs" / "app.log"
    new.write_text(f"{stamp(600)} {TOO_MANY}\n{stamp(601)} {TOO_MANY}\n{stamp(700)} INFO ok\n")
    firings, summary = replay(config, [LogFile(new, "app"), LogFile(old, "app")])
    assert [f.at for f in firings] == [T0 + 601]
    assert (summary.first_at, summary.last_at) == (T0, T0 + 700)


def test_a_gzip_file_is_read_transparently(config: Config, target: Path) -> None:
    """A .gz log replays exactly like the plain one."""
    plain = write_log(target / "logs" / "app.log", [300, 303, 306])
    packed = target / "logs" / "app.log.1.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    firings, summary = replay(config, [LogFile(packed, "app")])
    assert [f.at for f in firings] == [T0 + 306]
    assert summary.lines == 123


def test_chunks_hold_whole_lines_as_the_tailer_sees_them(tmp_path: Path) -> None:
    """Chunks end at newlines; CRLF, a BOM and an overlong line are handled as the tailer does."""
    log = tmp_path / "a.log"
    log.write_bytes(b"\xef\xbb\xbfone\r\ntwo\n" + b"x" * 50 + b"\nthree")
    assert b"".join(read_chunks(log, max_line=20, chunk_bytes=7)) == b"one\ntwo\n" + b"x" * 20 + b"\nthree\n"


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        ("{format: '%d/%m/%Y %H:%M:%S'}", "25/11/2026 10:00:01 ERROR 429 Too Many Requests"),
        ("{regex: 'time=(?P<ts>\\S+)'}", "level=error time=2026-11-25T10:00:01Z msg=429 Too Many Requests"),
        ("{regex: '@(?P<ts>[^@]+)@', format: '%H:%M:%S %d.%m.%Y'}", "@10:00:01 25.11.2026@ 429 Too Many Requests"),
    ],
)
def test_a_configured_timestamp_format_or_regex_is_used(tmp_path: Path, target: Path, spec: str, line: str) -> None:
    """sources.NAME.timestamp (format, regex with a ts group) decides how a line's time is read."""
    write_config(tmp_path, target)
    cfg_path = tmp_path / "suture.yaml"
    cfg_path.write_text(cfg_path.read_text().replace(
        f"app: {{file: {target}/logs/*.log}}", f"app: {{file: {target}/logs/*.log, timestamp: {spec}}}"))
    config = load_config(cfg_path, env={})
    log = target / "logs" / "app.log"
    log.write_text(f"{line}\n" * 3)
    firings, _ = replay(config, [LogFile(log, "app")])
    assert [f.at for f in firings] == [T0 + 1]


def test_a_file_outside_every_source_glob_is_a_clear_error(tmp_path: Path, target: Path) -> None:
    """With several file sources and no match, the error lists them and points at --source."""
    write_config(tmp_path, target)
    cfg_path = tmp_path / "suture.yaml"
    cfg_path.write_text(cfg_path.read_text().replace(
        "sources:\n", f"sources:\n  worker: {{file: {target}/worker/*.log}}\n"))
    config = load_config(cfg_path, env={})
    stray = write_log(tmp_path / "elsewhere.txt", [])
    with pytest.raises(ReplayError) as err:
        assign_sources([stray], config)
    assert f"matches no file source (worker: {target}/worker/*.log, app: {target}/logs/*.log)" in str(err.value)
    assert "--source NAME" in str(err.value)
    assert [LogFile(stray, "worker")] == assign_sources([stray], config, source="worker")
    rotated = write_log(target / "logs" / "app.log.2.gz", [])
    assert [LogFile(rotated, "app")] == assign_sources([rotated], config)


def test_the_cli_prints_the_timeline_and_touches_nothing(cli_setup: Path, target: Path) -> None:
    """`suture replay` prints the firing and its edit; target bytes, mtime and the state_dir are untouched."""
    settings = target / "config" / "settings.yaml"
    before = (settings.read_bytes(), settings.stat().st_mtime_ns)
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    result = cli(log, "--config", cli_setup, cwd=cli_setup.parent)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("2026-11-25T10:05:06Z  APPLY    rate-limit-backoff: at least 3 line(s) of app")
    assert first.endswith("-> would change config/settings.yaml upstream.request_delay_s: 0.5 -> 1.0")
    assert "-- replayed 1 file(s): 123 lines" in result.stdout
    assert "not simulated: validation windows" in result.stdout
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    assert before == (settings.read_bytes(), settings.stat().st_mtime_ns)
    assert not (cli_setup.parent / "state").exists()


def test_the_cli_json_output_parses(cli_setup: Path, target: Path) -> None:
    """--json prints one object per firing, then a summary object."""
    log = write_log(target / "logs" / "app.log", [60, 61, 62, 90, 91, 92])
    result = cli(log, "--config", cli_setup, "--json", cwd=cli_setup.parent)
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["type"] for o in objects] == ["firing", "firing", "summary"]
    assert [o["verdict"] for o in objects[:2]] == ["apply", "skip"]
    assert objects[0]["at"] == "2026-11-25T10:01:02Z"
    assert objects[0]["changes"] == [{"file": "config/settings.yaml", "action": "adjust", "target": "upstream.request_delay_s",
             "old": "0.5", "new": "1.0", "line": 4}]
    assert objects[2]["firings"] == {"rate-limit-backoff": {"apply": 1, "skip": 1}}
    assert objects[2]["matched_lines"] == 6


def test_the_cli_refuses_a_file_it_cannot_place(cli_setup: Path, tmp_path: Path) -> None:
    """A missing file exits 2 with the file named."""
    result = cli(tmp_path / "nope.log", "--config", cli_setup, cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.log: no such file" in result.stderr


PROBED = RATE_LIMIT.replace(
    "        - log: {source: app, pattern: '429 .*Too Many Requests', at_least: 3, within: 10s}",
    "        - log: {source: app, pattern: '429 .*Too Many Requests', at_least: 3, within: 10s}\n"
    "        - probe: {name: api, status: healthy}",
)


@pytest.mark.parametrize(("assume", "fired"), [("hold", [T0 + 306]), ("fail", [])])
def test_conditions_a_log_cannot_show_are_assumed(config: Config, target: Path, assume: str, fired: list[float]) -> None:
    """A probe condition holds by default (and says it was assumed); --assume fail never holds it."""
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    firings, summary = replay(config, [LogFile(log, "app")], [playbook(PROBED)], assume=assume)
    assert fired == [f.at for f in firings]
    assert (("probe api healthy",) if assume == "hold" else ()) == summary.assumed
    assert all(f.detected[-1] == "probe api healthy (assumed)" for f in firings)


def test_a_broken_gzip_file_is_named_in_the_error(config: Config, target: Path) -> None:
    """A truncated .gz stops the replay with an error that names the file."""
    packed = target / "logs" / "app.log.gz"
    packed.write_bytes(gzip.compress(b"2026-11-25T10:00:00Z INFO x\n" * 1000)[:60])
    with pytest.raises(ReplayError, match=r"app\.log\.gz"):
        replay(config, [LogFile(packed, "app")])


def test_the_progress_bar_is_throttled_and_cleared() -> None:
    """Progress redraws one line at most every 0.1 s and erases it when done."""
    out = io.StringIO()
    progress = Progress(2 * 2**20, out)
    for done in range(0, 2**20, 1024):
        progress.update(done, done // 100)
    progress.done()
    text = out.getvalue()
    assert text.count("MiB") == 1
    assert text.startswith("\r\033[K0.0 / 2.0 MiB (0%)")
    assert text.endswith("\r\033[K")


def test_a_log_without_timestamps_starts_at_zero_with_a_warning(config: Config, target: Path) -> None:
    """No timestamp anywhere: lines count from the epoch, and the summary says why."""
    log = target / "logs" / "app.log"
    log.write_text(f"{TOO_MANY}\n" * 3)
    firings, summary = replay(config, [LogFile(log, "app")])
    assert [f.at for f in firings] == [0.0]
    assert summary.warnings == [f"{log}: no timestamp in its first 258 bytes; it starts at 1970-01-01 "
                                "(set sources.NAME.timestamp)"]
