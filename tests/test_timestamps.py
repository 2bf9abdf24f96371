"""Reading a log line's own time: every built-in format, and placing times written without a year or date."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from suture.sidecar.logtime import Partial
from suture.sidecar.timestamps import TimestampError, Timestamps


def at(text: str) -> float:
    """``2026-11-25T10:00:01.5`` (UTC) -> epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def shown(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


REFERENCE = at("2026-11-25T12:00:00")  # the file's mtime in these tests


@pytest.mark.parametrize(
    ("line", "expected", "fmt"),
    [
        ("2026-11-25T10:00:01Z INFO x", "2026-11-25T10:00:01.000000", "iso8601"),
        ("2026-11-25T10:00:01.123+01:00 INFO x", "2026-11-25T09:00:01.123000", "iso8601"),
        ("2026-11-25 10:00:01 INFO x", "2026-11-25T10:00:01.000000", "iso8601"),
        ("2026-11-25 10:00:01,123 ERROR app: x", "2026-11-25T10:00:01.123000", "iso8601"),
        ("2026-11-25 10:00:01,123 [main] INFO  com.example.App - Starting", "2026-11-25T10:00:01.123000", "iso8601"),
        ("2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - x",
         "2015-07-29T17:41:44.747000", "iso8601"),
        ("2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38101a0b] GET", "2017-05-16T00:00:00.008000",
         "iso8601"),
        ("[2026-11-25T10:00:01Z] ERROR x", "2026-11-25T10:00:01.000000", "iso8601"),
        ("[2026-11-25 10:00:01,123] INFO [KafkaServer id=1] started (kafka.server.KafkaServer)",
         "2026-11-25T10:00:01.123000", "iso8601"),
        ("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - An application event",
         "2003-10-11T22:14:15.003000", "iso8601"),
        ("I, [2026-11-25T10:00:01.123456 #1234]  INFO -- : Started GET \"/\"", "2026-11-25T10:00:01.123456", "iso8601"),
        ('{"level":"info","ts":1795600801.25,"caller":"main.go:12","msg":"hi"}', "2026-11-25T10:00:01.250000", "json"),
        ('{"level":"info","msg":"hi","time":"2026-11-25T11:00:01+01:00"}', "2026-11-25T10:00:01.000000", "json"),
        ('{"name":"app","pid":1,"level":30,"msg":"hi","time":"2026-11-25T10:00:01.123Z","v":0}',
         "2026-11-25T10:00:01.123000", "json"),
        ('{"level":30,"time":1795600801123,"pid":1,"msg":"hi"}', "2026-11-25T10:00:01.123000", "json"),
        ('{"@timestamp":"2026-11-25T10:00:01.123Z","log.level":"info","message":"hi"}', "2026-11-25T10:00:01.123000",
         "json"),
        ('{"t":{"$date":"2026-11-25T10:00:01.123+00:00"},"s":"I","c":"NETWORK","msg":"x"}',
         "2026-11-25T10:00:01.123000", "json"),
        ('{"log":"GET / 200\\n","stream":"stdout","time":"2026-11-25T10:00:01.123456789Z"}',
         "2026-11-25T10:00:01.123457", "json"),
        ("Nov 25 10:00:01 host app[12]: x", "2026-11-25T10:00:01.000000", "syslog"),
        ("<34>Nov  5 10:00:01 host app: x", "2026-11-05T10:00:01.000000", "syslog"),
        ("2026/11/25 10:00:01 [error] 123#0: *1 connect() failed (111: Connection refused)", "2026-11-25T10:00:01.000000",
         "slashed"),
        ("2009/11/10 23:00:00 hello", "2009-11-10T23:00:00.000000", "slashed"),
        ("2009/11/10 23:00:00.123456 hello", "2009-11-10T23:00:00.123456", "slashed"),
        ("17/06/09 20:10:40 INFO executor.CoarseGrainedExecutorBackend: Registered signal handlers",
         "2017-06-09T20:10:40.000000", "yy/mm/dd"),
        ("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
         "2008-11-09T20:36:15.000000", "yymmdd"),
        ("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6", "2005-12-04T04:47:44.000000",
         "ctime"),
        ("[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] File does not exist",
         "2011-09-09T10:42:29.902022", "ctime"),
        ("03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs", "2026-03-17T16:13:38.811000",
         "logcat"),
        ("I1125 04:05:06.789012    1 file.go:12] msg", "2026-11-25T04:05:06.789012", "klog"),
        ("1:M 25 Nov 2026 10:00:01.123 * Ready to accept connections tcp", "2026-11-25T10:00:01.123000", "redis"),
        ("1795600801 x", "2026-11-25T10:00:01.000000", "epoch"),
        ("1795600801.25 x", "2026-11-25T10:00:01.250000", "epoch"),
        ("1795600801123 x", "2026-11-25T10:00:01.123000", "epoch"),
        ("10:00:01.123 [main] INFO  com.example.App - Started", "2026-11-25T10:00:01.123000", "time"),
        ('time="2026-11-25T11:00:01+01:00" level=info msg="hi"', "2026-11-25T10:00:01.000000", "logfmt"),
        ("level=info ts=2026-11-25T10:00:01.123Z caller=main.go:12 msg=hi", "2026-11-25T10:00:01.123000", "logfmt"),
        ("time=2026-11-25T10:00:01.000Z level=INFO msg=hello", "2026-11-25T10:00:01.000000", "logfmt"),
        ('10.0.0.1 - - [25/Nov/2026:11:00:01 +0100] "GET / HTTP/1.1" 200 5', "2026-11-25T10:00:01.000000", "clf"),
    ],
)
def test_formats_are_recognised_without_configuration(line: str, expected: str, fmt: str) -> None:
    """Each built-in format is read (naive means UTC), and is named as the format the file is in."""
    stamps = Timestamps(reference=REFERENCE)
    assert (expected, fmt) == (shown(stamps.parse(line)), stamps.format)


@pytest.mark.parametrize(
    "line",
    [
        "no time on this line",
        "2026-02-30T10:00:00Z impossible date",
        "Traceback (most recent call last):",
        '  File "/app/main.py", line 12, in <module>',
        '{"level":"info","time":35,"msg":"a duration, not a time"}',
        '{"level":"info","msg":"no time field"}',
        "I1302 04:05:06.789012    1 file.go:12] month 13",
        "99:99:99 not a time of day",
        "12345 short number",
    ],
)
def test_lines_without_a_time_read_as_none(line: str) -> None:
    """Continuation lines, impossible dates and numbers that are not times are no time at all."""
    assert Timestamps(reference=REFERENCE).parse(line) is None


def test_a_json_time_is_the_first_field_that_holds_one() -> None:
    """A ``time`` field holding a duration is passed over for the ``ts`` field after it."""
    line = '{"time":35,"ts":1795600801,"msg":"x"}'
    assert shown(Timestamps().parse(line)) == "2026-11-25T10:00:01.000000"


@pytest.mark.parametrize("number", ["1795600801.5", "1795600801500", "1795600801500000", "1795600801500000000"])
def test_json_epoch_numbers_are_told_apart_by_size(number: str) -> None:
    """Epoch seconds, milliseconds, microseconds and nanoseconds all read as the same moment."""
    assert shown(Timestamps().parse(f'{{"ts":{number}}}')) == "2026-11-25T10:00:01.500000"


def test_a_year_less_time_takes_the_latest_year_not_after_the_mtime() -> None:
    """A syslog line dated 31 December in a file last written on 1 January is from the year before."""
    stamps = Timestamps(reference=at("2026-01-01T00:45:00"))
    assert shown(stamps.parse("Dec 31 23:30:01 web01 CRON[1]: x")) == "2025-12-31T23:30:01.000000"
    assert stamps.placed


def test_the_year_moves_on_when_the_month_wraps() -> None:
    """December then January: the January lines are in the next year."""
    stamps = Timestamps(year=2025)
    times = [shown(stamps.parse(line)) for line in ("Dec 31 23:59:58 h a: x", "Jan  1 00:00:01 h a: x",
                                                     "Feb  3 08:00:00 h a: x")]
    assert times == ["2025-12-31T23:59:58.000000", "2026-01-01T00:00:01.000000", "2026-02-03T08:00:00.000000"]


def test_a_line_slightly_out_of_order_does_not_move_the_year() -> None:
    """A 31 January line just after a 1 February line is a late line, not one from next January."""
    stamps = Timestamps(year=2026)
    stamps.parse("Feb  1 00:00:05 h a: x")
    assert shown(stamps.parse("Jan 31 23:59:59 h a: x")) == "2026-01-31T23:59:59.000000"


def test_year_overrides_the_mtime() -> None:
    """``year`` (suture replay --year) places the first year-less line, whatever the mtime says."""
    stamps = Timestamps(year=2019, reference=REFERENCE)
    assert shown(stamps.parse("03-17 16:13:38.811  1702  2395 D Tag: x")) == "2019-03-17T16:13:38.811000"
    assert not stamps.placed


def test_a_time_of_day_takes_the_date_of_the_line_before_and_wraps_at_midnight() -> None:
    """A time-only line after a dated one is on its date, and on the next after 23:59."""
    stamps = Timestamps(reference=REFERENCE)
    stamps.parse("2026-11-25 23:59:58,001 INFO starting")
    assert shown(stamps.parse("00:00:01.000 [main] INFO x")) == "2026-11-26T00:00:01.000000"
    assert shown(stamps.parse("00:00:02.000 [main] INFO x")) == "2026-11-26T00:00:02.000000"
    assert not stamps.placed


@pytest.mark.parametrize(
    ("mtime", "line", "expected"),
    [
        ("2026-11-25T12:00:00", "10:00:01.123 [main] INFO x", "2026-11-25T10:00:01.123000"),
        ("2026-11-26T00:40:00", "23:20:04.118 [main] INFO x", "2026-11-25T23:20:04.118000"),
        ("2026-11-25T08:00:00", "09:30:00.000 [main] INFO x", "2026-11-25T09:30:00.000000"),  # written at UTC+2
    ],
)
def test_a_first_time_of_day_takes_the_latest_date_not_more_than_14h_after_the_mtime(
        mtime: str, line: str, expected: str) -> None:
    """Without a dated line before it, a time of day is placed by the file's mtime (zones east of UTC allowed)."""
    stamps = Timestamps(reference=at(mtime))
    assert expected == shown(stamps.parse(line))
    assert stamps.placed


def test_without_year_or_mtime_a_partial_time_cannot_be_placed() -> None:
    """Nothing to place a syslog time by: it reads as no time (and the reader never asks a clock)."""
    assert Timestamps().parse("Nov 25 10:00:01 host app: x") is None
    assert Partial(11, 25, 36001.0) == Timestamps().read("Nov 25 10:00:01 host app: x")


def test_read_is_a_look_that_changes_nothing() -> None:
    """read() (a look back or ahead) never moves the year on; only parse() steps through the file."""
    stamps = Timestamps(year=2025)
    stamps.parse("Dec 31 23:59:58 h a: x")
    stamps.read("Jan  1 00:00:01 h a: x")
    assert shown(stamps.parse("Dec 31 23:59:59 h a: x")) == "2025-12-31T23:59:59.000000"


@pytest.mark.parametrize(
    ("fmt", "line", "expected"),
    [
        ("%d/%m/%Y %H:%M:%S", "25/11/2026 10:00:01 ERROR x", "2026-11-25T10:00:01.000000"),
        ("%Y-%m-%d %H:%M:%S%z", "2026-11-25 11:00:01+0100 ERROR x", "2026-11-25T10:00:01.000000"),
        ("%d.%m %H:%M:%S", "31.12 23:30:01 no year", "2025-12-31T23:30:01.000000"),
        ("%H:%M:%S", "23:30:01 no date", "2025-12-31T23:30:01.000000"),
    ],
)
def test_a_configured_strptime_format_is_placed_like_the_built_in_ones(fmt: str, line: str, expected: str) -> None:
    """A strptime format without %Y (or without a date) gets its year (date) by the same rules."""
    stamps = Timestamps(format=fmt, reference=at("2026-01-01T00:45:00"))
    assert expected == shown(stamps.parse(line))


def test_a_configured_format_name_reads_only_that_format() -> None:
    """``format: klog`` reads klog lines, and an ISO line in the same file is no time."""
    stamps = Timestamps(format="klog", reference=REFERENCE)
    assert shown(stamps.parse("E1125 04:05:06 1 a.go:1] x")) == "2026-11-25T04:05:06.000000"
    assert stamps.parse("2026-11-25T10:00:01Z INFO x") is None
    assert stamps.format == "klog"


def test_a_timestamp_regex_needs_a_ts_group() -> None:
    """A configured regex without (?P<ts>...) is refused with a message that says so."""
    with pytest.raises(TimestampError, match="named group 'ts'"):
        Timestamps(regex=r"time=(\S+)")


def test_an_unsupported_strptime_directive_is_refused() -> None:
    """A directive the line finder cannot turn into a regex is named in the error."""
    with pytest.raises(TimestampError, match="%c is not supported"):
        Timestamps(format="%c")
