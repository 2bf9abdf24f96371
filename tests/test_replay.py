"""suture replay: recorded logs through the playbooks, on the logs' own clock, touching nothing."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import shutil
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
    iso,
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


@pytest.mark.parametrize(("assume", "fired"), [("logs", [T0 + 306]), ("hold", [T0 + 306]), ("fail", [])])
def test_conditions_beside_a_log_condition_are_assumed(config: Config, target: Path, assume: str,
                                                       fired: list[float]) -> None:
    """A probe beside a log condition holds by default and with --assume hold (each firing says so); fail: never."""
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    firings, summary = replay(config, [LogFile(log, "app")], [playbook(PROBED)], assume=assume)
    assert fired == [f.at for f in firings]
    assert (("probe api healthy",), assume) == (summary.assumed, summary.assume)
    assert all((f.assumed, f.from_logs) == (("probe api healthy",), True) for f in firings)
    assert summary.not_evaluable == {}


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


# --- real log formats, on their own clock -------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "logs"

WINDOWED = """
    id: {id}
    when:
      log: {{source: app, pattern: '{pattern}', at_least: 3, within: 1m}}
    confidence: 90
    fix:
      - adjust: {{file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2, max: 5}}
    validate:
      window: 10s
      expect:
        - log: {{source: app, pattern: '{pattern}', at_most: 0}}
    cooldown: 1h
"""

# fixture, format read, first line, last line, a burst (3 lines within a minute), the same count over an hour,
# when the burst fires (its third line, or the stamped line before it)
FORMATS = [
    ("apache-error", "ctime", "2005-12-04T04:47:44Z", "2005-12-04T06:01:30Z",
     "Directory index forbidden", "mod_jk child workerEnv in error state", "2005-12-04T05:15:41Z"),
    ("hadoop", "yy/mm/dd", "2017-06-09T20:10:40Z", "2017-06-09T21:12:09Z",
     "Connection reset by peer", "Slow ReadProcessor", "2017-06-09T20:52:31Z"),
    ("hdfs", "yymmdd", "2008-11-09T20:36:15Z", "2008-11-09T21:38:51Z",
     "is valid, and cannot be written to", "Got exception while serving", "2008-11-09T21:15:44Z"),
    ("logcat", "logcat", "2026-03-17T16:13:38.811Z", "2026-03-17T17:14:03.640Z",
     "FATAL EXCEPTION", "Slow operation", "2026-03-17T16:52:49.502Z"),
    ("zookeeper", "iso8601", "2015-07-29T17:41:44.747Z", "2015-07-29T18:50:12.003Z",
     "caught end of stream exception", "Send worker leaving thread", "2015-07-29T18:13:20.911Z"),
    ("openstack", "iso8601", "2017-05-16T00:00:00.008Z", "2017-05-16T01:10:00.815Z",
     "MessagingTimeout", "Instance shutdown by itself", "2017-05-16T00:21:40.385Z"),
    ("syslog", "syslog", "2025-12-31T23:30:01Z", "2026-01-01T00:40:01Z",
     "Failed password", "EXT4-fs warning", "2026-01-01T00:12:09Z"),
    ("nginx-error", "slashed", "2026-11-25T10:00:01Z", "2026-11-25T11:20:45Z",
     r"connect\(\) failed \(111", "upstream timed out", "2026-11-25T10:31:30Z"),
    ("klog", "klog", "2026-12-02T04:05:06.789Z", "2026-12-02T05:20:00.000Z",
     "connect: connection refused", "Failed to update lock", "2026-12-02T04:38:41.877Z"),
    ("rfc5424", "iso8601", "2026-11-25T10:00:01.003Z", "2026-11-25T11:10:09.884Z",
     "could not obtain connection from pool", "payment provider slow", "2026-11-25T10:40:55.648Z"),
    ("golog", "slashed", "2026-11-25T10:00:01Z", "2026-11-25T11:20:00Z",
     "TLS handshake error", "database is locked", "2026-11-25T10:26:58Z"),
    ("log4j", "iso8601", "2026-11-25T10:00:01.123Z", "2026-11-25T11:10:02.990Z",
     "Connection is not available", "Thread starvation", "2026-11-25T10:24:48.114Z"),
    ("logback", "time", "2026-11-25T23:20:04.118Z", "2026-11-26T00:35:00.004Z",
     "Read timed out", "longer than its 60000 ms period", "2026-11-26T00:02:49.717Z"),
    ("redis", "redis", "2026-11-25T10:00:01.112Z", "2026-11-25T11:02:18.338Z",
     "Background saving error", "AOF fsync is taking too long", "2026-11-25T10:21:12.021Z"),
    ("logfmt", "logfmt", "2026-11-25T10:00:01.023Z", "2026-11-25T11:10:00Z",
     "Error sending alert", "Append failed", "2026-11-25T10:27:23.515Z"),
    ("access", "clf", "2026-11-25T10:00:01Z", "2026-11-25T11:05:09Z",
     '"POST /api/login HTTP/1.1" 401', '" 500 ', "2026-11-25T10:33:15Z"),
    ("zap", "json", "2026-11-25T10:00:01.123Z", "2026-11-25T11:04:30.000Z",
     "failed to charge card", "consumer lag above threshold", "2026-11-25T10:21:40.774Z"),
    ("logrus", "json", "2026-11-25T10:00:01Z", "2026-11-25T11:04:30Z",
     "s3 upload failed", "job retried", "2026-11-25T10:21:40Z"),
    ("bunyan", "json", "2026-11-25T10:00:01.120Z", "2026-11-25T11:04:30Z",
     "ECONNRESET", "slow query", "2026-11-25T10:21:40.412Z"),
    ("pino", "json", "2026-11-25T10:00:01.120Z", "2026-11-25T11:04:30Z",
     "ETIMEDOUT", "cache miss storm", "2026-11-25T10:21:40.412Z"),
    ("elastic", "json", "2026-11-25T10:00:01.120Z", "2026-11-25T11:04:30Z",
     "Inventory reservation failed", "Circuit breaker half-open", "2026-11-25T10:21:40.412Z"),
]


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def copy_fixture(name: str, target: Path, *, mtime: float) -> Path:
    """tests/fixtures/logs/<name>.log in the target's logs, last modified at ``mtime``."""
    log = target / "logs" / f"{name}.log"
    shutil.copyfile(FIXTURES / f"{name}.log", log)
    os.utime(log, (mtime, mtime))
    return log


def windowed(pid: str, pattern: str) -> Playbook:
    return playbook(WINDOWED.format(id=pid, pattern=pattern.replace("'", "''")))


@pytest.mark.parametrize(("name", "fmt", "first", "last", "burst", "spread", "fires"), FORMATS,
                         ids=[row[0] for row in FORMATS])
def test_each_format_replays_on_its_own_time(config: Config, target: Path, name: str, fmt: str, first: str,
                                             last: str, burst: str, spread: str, fires: str) -> None:
    """The file's real span is read; 3 lines within a minute fire a 1m window, 3 spread over an hour do not."""
    log = copy_fixture(name, target, mtime=moment(last) + 600)  # year-less formats: their year from the mtime
    firings, summary = replay(config, [LogFile(log, "app")], [windowed("burst", burst), windowed("spread", spread)])
    (timeline,) = summary.timelines
    assert (fmt, first, last) == (timeline.format, iso(timeline.first_at), iso(timeline.last_at))
    assert (first, last) == (iso(summary.first_at), iso(summary.last_at))
    assert [("burst", fires)] == [(f.playbook_id, iso(f.at)) for f in firings]
    assert (summary.matched_lines, summary.warnings) == (6, [])


def test_a_syslog_file_over_new_year_is_placed_by_its_mtime(config: Config, target: Path) -> None:
    """December lines in a file last written in January are the year before; the summary says how it placed them."""
    log = copy_fixture("syslog", target, mtime=moment("2026-01-01T00:45:00Z"))
    _, summary = replay(config, [LogFile(log, "app")], [windowed("burst", "Failed password")])
    (timeline,) = summary.timelines
    assert timeline.placed
    assert (f"{log}: syslog (no year or date written: placed by the file's mtime), "
            "2025-12-31T23:30:01Z to 2026-01-01T00:40:01Z") == timeline.describe()


def test_a_year_given_on_the_command_line_wins_over_the_mtime(config: Config, target: Path) -> None:
    """--year places the first year-less line; the month wrap still moves it on."""
    log = copy_fixture("syslog", target, mtime=moment("2026-01-01T00:45:00Z"))
    _, summary = replay(config, [LogFile(log, "app")], [windowed("burst", "Failed password")], year=2019)
    assert (iso(summary.first_at), iso(summary.last_at)) == ("2019-12-31T23:30:01Z", "2020-01-01T00:40:01Z")


def test_times_placed_past_the_mtime_are_warned_about(config: Config, target: Path) -> None:
    """A year-less file spanning more than a year runs on past its mtime: a warning says so and names --year."""
    log = target / "logs" / "app.log"
    log.write_text("Jun  1 10:00:00 web01 app[1]: started\nDec 31 10:00:00 web01 app[1]: ok\n"
                   "Jan  1 10:00:00 web01 app[1]: ok\nJun  2 10:00:00 web01 app[1]: stopped\n")
    os.utime(log, (moment("2026-06-02T10:05:00Z"),) * 2)
    warned: list[str] = []
    _, summary = replay(config, [LogFile(log, "app")], on_warning=warned.append)
    assert (iso(summary.first_at), iso(summary.last_at)) == ("2026-06-01T10:00:00Z", "2027-06-02T10:00:00Z")
    assert warned == summary.warnings == [
        f"{log}: its times have no year (or no date) and were placed by the file's mtime 2026-06-02T10:05:00Z, "
        "yet they run on to 2027-06-02T10:00:00Z: the file spans more than a year (a day), or its mtime is older "
        "than its last line; give the year with --year, or set sources.app.timestamp"]


# --- a file without readable times --------------------------------------------------------------


def test_a_log_without_timestamps_replays_in_file_order_with_a_warning(config: Config, target: Path) -> None:
    """No readable time in the first lines: 1 line per ms ending at the mtime, never 1970, and a warning."""
    log = target / "logs" / "app.log"
    log.write_text("INFO starting\n" + f"{TOO_MANY}\n" * 3 + "INFO ok\n" * 96)  # 100 lines
    os.utime(log, (T0, T0))
    warned: list[str] = []
    firings, summary = replay(config, [LogFile(log, "app")], on_warning=warned.append)
    assert [pytest.approx(f.at) for f in firings] == [T0 - 0.099 + 0.003]  # the 4th line of 100
    (timeline,) = summary.timelines
    assert ("file order", pytest.approx(T0 - 0.099), T0) == (timeline.format, timeline.first_at, timeline.last_at)
    assert warned == summary.warnings == [
        f"{log}: none of its 100 line(s) has a time suture can read; replaying it in file order, 1 line per 1 ms, "
        f"from 2026-11-25T09:59:59.901Z to its mtime 2026-11-25T10:00:00Z (set sources.app.timestamp to read its times)"]


@pytest.mark.parametrize(("first_stamp", "order"), [(999, False), (1001, True)])
def test_only_the_first_thousand_lines_decide_file_order(config: Config, target: Path, first_stamp: int,
                                                         order: bool) -> None:
    """A time on line 999 starts the file's own clock there; none before line 1001 is file order."""
    log = target / "logs" / "app.log"
    log.write_text("  continuation line\n" * (first_stamp - 1) + f"{stamp(0)} INFO first\n" + f"{stamp(5)} {TOO_MANY}\n")
    os.utime(log, (T0 + 3600, T0 + 3600))
    _, summary = replay(config, [LogFile(log, "app")], chunk_bytes=4096)
    (timeline,) = summary.timelines
    assert order == timeline.order
    assert (T0 + 3600 if order else T0 + 5) == pytest.approx(timeline.last_at)


def test_a_file_in_file_order_keeps_counting_across_chunks(config: Config, target: Path) -> None:
    """Line numbers, not chunk numbers, make the time: the last line is at the mtime however the file is read."""
    log = target / "logs" / "app.log"
    log.write_text("".join(f"line {i} {TOO_MANY if i in (1500, 1501, 1502) else 'ok'}\n" for i in range(3000)))
    os.utime(log, (T0, T0))
    firings, summary = replay(config, [LogFile(log, "app")], chunk_bytes=1000)
    assert [pytest.approx(T0 - 2.999 + 1.502)] == [f.at for f in firings]
    assert pytest.approx(T0) == summary.last_at


# --- what a log cannot show ----------------------------------------------------------------------

BUNDLED = Path(__file__).parents[1] / "playbooks"
BUNDLED_CONFIG = Path(__file__).parent / "fixtures" / "bundled" / "suture.yaml"
SIGNAL_ONLY_ALTERNATIVES = {"cpu-overload", "crash-loop", "disk-filling", "memory-batch-size",
                            "memory-pressure-restart", "queue-growing"}


def test_bundled_playbooks_over_a_quiet_log_fire_nothing_and_list_what_they_cannot_see(tmp_path: Path) -> None:
    """Metric and container alternatives are not evaluable from a log: listed, not fired, not counted."""
    from suture.engine.loader import load_playbooks

    config = load_config(BUNDLED_CONFIG, env={})
    pbs = load_playbooks([BUNDLED], config).playbooks
    (tmp_path / "logs").mkdir()
    log = copy_fixture("golog", tmp_path, mtime=T0)
    firings, summary = replay(config, [LogFile(log, "app")], list(pbs))
    assert (firings, summary.firings) == ([], {})
    assert set(summary.not_evaluable) == SIGNAL_ONLY_ALTERNATIVES
    assert summary.not_evaluable["cpu-overload"] == ("cpu_percent > 90 for 300s",)
    assert summary.not_replayed == ()  # each still has a log alternative, which is replayed


def test_with_assume_hold_signal_only_alternatives_fire_marked_as_assumed(tmp_path: Path) -> None:
    """--assume hold evaluates them: they fire at the first line, each firing saying it rests on assumptions alone."""
    from suture.engine.loader import load_playbooks

    config = load_config(BUNDLED_CONFIG, env={})
    pbs = load_playbooks([BUNDLED], config).playbooks
    (tmp_path / "logs").mkdir()
    log = copy_fixture("golog", tmp_path, mtime=T0)
    firings, summary = replay(config, [LogFile(log, "app")], list(pbs), assume="hold")
    assert {f.playbook_id for f in firings} == SIGNAL_ONLY_ALTERNATIVES
    assert all(not f.from_logs and f.assumed and iso(f.at) == "2026-11-25T10:00:01Z" for f in firings)
    assert set(summary.assumed_only) == SIGNAL_ONLY_ALTERNATIVES
    crash = next(f for f in firings if f.playbook_id == "crash-loop")
    assert crash.assumed == ("container app restarted at least 5 time(s) within 600s",)


ANOMALY = """
    id: error-anomaly
    when: {log: {source: app, pattern: 'ERROR', anomaly: {sigma: 4, baseline: 1h}}}
    confidence: 50
    fix: [{adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2, max: 5}}]
    validate: {window: 1m, expect: [{log: {source: app, pattern: ERROR, at_most: 0}}]}
"""
TRENDS_AND_ALERTS = """
    id: seen-elsewhere
    when:
      any:
        - metric: {name: disk_percent, predict: {above: 95, within: 1h}, over: 30m}
        - metric: {name: http_requests_total, labels: {code: "500"}, rate: {above: 5, over: 1m}}
        - alert: {name: HighErrorRate, state: firing}
    confidence: 90
    fix: [{adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2, max: 5}}]
    validate: {window: 1m, expect: [{alert: {name: HighErrorRate, state: resolved}}]}
"""


def test_a_log_anomaly_is_replayed_against_the_baseline_the_log_itself_builds(config: Config, target: Path) -> None:
    """An hour and more of one ERROR every 2 minutes is the baseline; a minute of 20 fires, once, at the burst."""
    trickle = [float(s) for s in range(0, 80 * 60, 120)]
    burst = [80 * 60 + 2.0 * i for i in range(20)]
    log = target / "logs" / "app.log"
    log.write_text("".join(f"{stamp(s)} {'ERROR db timeout' if s in trickle or s in burst else 'INFO ok'}\n"
                           for s in sorted({*trickle, *burst, *range(0, 82 * 60, 30)})))
    firings, summary = replay(config, [LogFile(log, "app")], [playbook(ANOMALY)])
    assert [(f.playbook_id, f.verdict) for f in firings] == [("error-anomaly", "propose")]
    assert T0 + 80 * 60 <= firings[0].at < T0 + 81 * 60  # within the burst's minute, not during the trickle
    assert summary.not_evaluable == {}


def test_a_steady_trickle_of_errors_is_no_anomaly(config: Config, target: Path) -> None:
    log = target / "logs" / "app.log"
    log.write_text("".join(f"{stamp(s)} ERROR db timeout\n" for s in range(0, 3 * 3600, 60)))
    firings, _ = replay(config, [LogFile(log, "app")], [playbook(ANOMALY)])
    assert firings == []


def test_trends_rates_and_alerts_are_listed_as_not_evaluable_from_a_log(config: Config, target: Path) -> None:
    """A prediction, a counter's rate and an Alertmanager alert are not in a log: listed, never fired or assumed."""
    log = write_log(target / "logs" / "app.log", [])
    firings, summary = replay(config, [LogFile(log, "app")], [playbook(TRENDS_AND_ALERTS)])
    assert firings == []
    assert summary.not_evaluable == {"seen-elsewhere": (
        "disk_percent predicted above 95 within 3600s (fit over 1800s)",
        'rate(http_requests_total{code="500"}[60s]) > 5',
        "alert HighErrorRate firing",
    )}


PROBE_ONLY = """
    id: api-down
    when:
      probe: {name: api, status: unhealthy}
    confidence: 90
    fix:
      - adjust: {file: config/settings.yaml, key: upstream.request_delay_s, multiply: 2, max: 5}
    validate:
      window: 10s
      expect:
        - probe: {name: api, status: healthy}
"""

NOT_DOWN = RATE_LIMIT.replace(
    "        - log: {source: app, pattern: '429 .*Too Many Requests', at_least: 3, within: 10s}",
    "        - log: {source: app, pattern: '429 .*Too Many Requests', at_least: 3, within: 10s}\n"
    "        - not: {probe: {name: api, status: unhealthy}}",
)


@pytest.mark.parametrize(("assume", "fired"), [("logs", []), ("fail", []), ("hold", [T0])])
def test_a_playbook_without_a_log_condition_is_not_replayed(config: Config, target: Path, assume: str,
                                                            fired: list[float]) -> None:
    """A probe-only playbook is listed as not evaluable from logs; only --assume hold makes it fire, as assumed."""
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    firings, summary = replay(config, [LogFile(log, "app")], [playbook(PROBE_ONLY)], assume=assume)
    assert fired == [f.at for f in firings]
    assert summary.not_evaluable == {"api-down": ("probe api unhealthy",)}
    assert (("api-down",) if assume != "hold" else ()) == summary.not_replayed
    assert all(f.assumed == ("probe api unhealthy",) and not f.from_logs for f in firings)


def test_a_negated_condition_a_log_cannot_show_is_named_as_assumed(config: Config, target: Path) -> None:
    """`not: probe unhealthy` beside a log condition: the firing says it assumed the probe was not unhealthy."""
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    firings, _ = replay(config, [LogFile(log, "app")], [playbook(NOT_DOWN)])
    assert [(f.at, f.assumed, f.from_logs) for f in firings] == [(T0 + 306, ("not probe api unhealthy",), True)]


def with_probe(cfg_path: Path) -> None:
    """Name the probe `api` in suture.yaml (the playbooks below use it; a replay never runs it)."""
    cfg_path.write_text(cfg_path.read_text() + "probes:\n  api: {http: 'http://127.0.0.1:9/health'}\n")


def test_the_cli_reports_assumptions_and_what_logs_cannot_show(cli_setup: Path, target: Path) -> None:
    """Text and --json carry the same facts: what each firing assumed, and the alternatives not evaluable."""
    with_probe(cli_setup)
    (cli_setup.parent / "playbooks" / "rate-limit.yaml").write_text(dedent(PROBED))
    (cli_setup.parent / "playbooks" / "api-down.yaml").write_text(dedent(PROBE_ONLY))
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    text = cli(log, "--config", cli_setup, "--assume", "hold", cwd=cli_setup.parent)
    assert text.returncode == 0, text.stderr
    assert ("2026-11-25T10:00:00Z  APPLY    api-down: no log condition; assumed: probe api unhealthy"
            in text.stdout)
    assert "assumed: probe api healthy -> confidence" in text.stdout
    assert ("-- firings: api-down 1 (1 apply; 1 on assumed conditions alone); rate-limit-backoff 1 (1 apply)"
            in text.stdout)
    assert ("-- not evaluable from logs (replayed as holding from the first line, --assume hold): "
            "api-down: probe api unhealthy (no log condition at all)") in text.stdout
    assert f"-- time: {log}: iso8601, 2026-11-25T10:00:00Z to 2026-11-25T10:09:55Z" in text.stdout
    result = cli(log, "--config", cli_setup, "--assume", "hold", "--json", cwd=cli_setup.parent)
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    firings, summary = objects[:-1], objects[-1]
    assert [(o["playbook"], o["from_logs"], o["assumed"]) for o in firings] == [
        ("api-down", False, ["probe api unhealthy"]), ("rate-limit-backoff", True, ["probe api healthy"])]
    assert summary["assumed_only"] == {"api-down": 1}
    assert summary["not_evaluable"] == [{"playbook": "api-down", "alternatives": ["probe api unhealthy"],
                                         "replayed_as_holding": True, "has_log_condition": False}]
    assert summary["assume"] == "hold"
    assert [{"file": str(log), "format": "iso8601", "file_order": False, "placed_by_mtime": False,
             "from": "2026-11-25T10:00:00Z", "to": "2026-11-25T10:09:55Z"}] == summary["timelines"]


def test_without_assume_the_command_leaves_out_what_logs_cannot_show(cli_setup: Path, target: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """run_command without --assume: the probe-only playbook is listed as not evaluable, and nothing fires."""
    from suture.sidecar.replay import run_command

    with_probe(cli_setup)
    (cli_setup.parent / "playbooks" / "rate-limit.yaml").unlink()
    (cli_setup.parent / "playbooks" / "api-down.yaml").write_text(dedent(PROBE_ONLY))
    log = write_log(target / "logs" / "app.log", [300, 303, 306])
    args = argparse.Namespace(config=str(cli_setup), logs=[str(log)], source=None, year=None, assume=None, json=True)
    assert run_command(args) == 0
    (summary,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (summary["firings"], summary["assume"]) == ({}, "logs")
    assert summary["not_evaluable"] == [{"playbook": "api-down", "alternatives": ["probe api unhealthy"],
                                         "replayed_as_holding": False, "has_log_condition": False}]


def test_the_cli_warns_on_stderr_about_a_file_without_times(cli_setup: Path, target: Path) -> None:
    """The file-order warning is printed on stderr as it happens; stdout's summary only counts it."""
    log = target / "logs" / "app.log"
    log.write_text(f"{TOO_MANY}\n" * 3)
    result = cli(log, "--config", cli_setup, cwd=cli_setup.parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"suture replay: warning: {log}: none of its 3 line(s) has a time")
    assert "1970-01-01" not in result.stdout
    assert "-- 1 warning(s), printed on stderr" in result.stdout


def test_a_time_of_day_log_over_several_days_sees_every_midnight(config: Config, target: Path) -> None:
    """Midnights between the lines a replay reads are all counted: a burst on the third day fires on it."""
    log = target / "logs" / "app.log"
    lines = ["2026-11-23 00:00:00,000 [main] INFO  com.example.App - Started"]
    for minutes in range(20, 3 * 24 * 60, 20):  # a line every 20 minutes, three days of them
        lines.append(f"{minutes // 60 % 24:02d}:{minutes % 60:02d}:00.000 [main] INFO  com.example.App - tick")
        if minutes == (2 * 24 + 12) * 60:
            lines += [f"12:00:0{s}.000 [main] ERROR com.example.App - {TOO_MANY}" for s in (1, 2, 3)]
    log.write_text("\n".join(lines) + "\n")
    os.utime(log, (moment("2026-11-26T00:00:00Z"),) * 2)
    firings, summary = replay(config, [LogFile(log, "app")])
    assert [iso(f.at) for f in firings] == ["2026-11-25T12:00:03Z"]
    assert (iso(summary.first_at), iso(summary.last_at)) == ("2026-11-23T00:00:00Z", "2026-11-25T23:40:00Z")
    assert summary.warnings == []
