"""The time formats of common logs: what time a line's own text says.

Pure: text in, a reading out; no clock, no I/O, no state but a cache. A
reading is a moment (epoch seconds, UTC) or a :class:`Partial`: a time the
line wrote without its year (syslog, logcat, klog) or without its date (a
time of day alone). Placing a partial time on the calendar needs context
(the lines before it, the file's mtime), which is :mod:`.timestamps`' job.

A time written without a zone is read as UTC. Each format is tried at the
start of the line, except ``logfmt`` and ``clf``, which are found anywhere.
``Formats.readers`` names them, in the order they are first tried
(docs/replay.md has one example line of each):

========== ==================================================================
iso8601    ``2026-11-25T10:00:01.123Z``, ``2026-11-25 10:00:01,123`` (Python
           logging, log4j, Zookeeper, OpenStack), inside ``[...]`` (Kafka,
           Elasticsearch), after ``<PRI>1 `` (RFC 5424 syslog) or Ruby's ``I, [``
json       a JSON object's ``@timestamp``, ``timestamp``, ``time``, ``ts`` or
           ``$date`` field (the first that holds a time): an ISO string, or
           epoch seconds, ms, us or ns told apart by size (zap, logrus,
           bunyan, pino, Elastic ECS, MongoDB, Docker's json-file)
syslog     ``Nov 25 10:00:01`` (RFC 3164, optionally after ``<PRI>``): no year
slashed    ``2026/11/25 10:00:01`` (nginx error log, Go's log package, with
           optional ``.123456``)
yy/mm/dd   ``17/06/09 20:10:40`` (Hadoop, Spark)
yymmdd     ``081109 203615`` (HDFS)
ctime      ``[Sun Dec 04 04:47:44 2005]`` (Apache error log, 2.4 adds ``.123456``)
logcat     ``03-17 16:13:38.811`` (Android): no year
klog       ``I1202 04:05:06.789012`` (Kubernetes, glog): no year
redis      ``1:M 25 Nov 2026 10:00:01.123``
epoch      ``1795600801``, ``1795600801.25``, ``1795600801123`` (ms)
time       ``10:00:01.123`` (logback's and log4j2's default patterns): no date
logfmt     ``time=...`` / ``ts=...`` / ``timestamp=...`` anywhere, ISO or epoch
           seconds (logrus's text format, Go's slog, go-kit)
clf        ``[25/Nov/2026:10:00:01 +0000]`` anywhere (Apache/nginx access logs)
========== ==================================================================

Two-digit years are read as strptime's ``%y``: 69-99 are 19xx, 00-68 20xx.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_MON = "(" + "|".join(MONTHS) + ")"
_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_HMS = r"(\d{2}):(\d{2}):(\d{2})"
_FRAC = r"(?:[.,](\d{1,9}))?"
_END = r"(?![\d:])"

ISO = re.compile(r"(?:<\d{1,3}>(?:\d{1,2} )?|\[|[DIWEFAU], \[)?(\d{4})-(\d{2})-(\d{2})[T ]" + _HMS + _FRAC
                 + r"(Z|[+-]\d{2}(?::?\d{2})?)?" + _END)
JSON_TIME = re.compile(r'[{,]\s*"(?:@timestamp|timestamp|time|ts|\$date)"\s*:\s*'
                       r'(?:"([^"\\]{1,64})"|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?=\s*[,}]))')
SYSLOG = re.compile(r"(?:<\d{1,3}>)?" + _MON + r" {1,2}(\d{1,2}) " + _HMS + r"(?:\.(\d{1,9}))?" + _END)
SLASHED = re.compile(r"(\d{4})/(\d{2})/(\d{2}) " + _HMS + r"(?:\.(\d{1,9}))?" + _END)
YY_MM_DD = re.compile(r"(\d{2})/(\d{2})/(\d{2}) " + _HMS + _FRAC + _END)
YYMMDD = re.compile(r"(\d{2})(\d{2})(\d{2}) (\d{2})(\d{2})(\d{2})(?!\d)")
CTIME = re.compile(r"\[?" + _DAY + " " + _MON + r" {1,2}(\d{1,2}) " + _HMS + r"(?:\.(\d{1,9}))? (\d{4})(?!\d)")
LOGCAT = re.compile(r"(\d{2})-(\d{2}) " + _HMS + r"(?:\.(\d{1,9}))?" + _END)
KLOG = re.compile(r"[IWEF](\d{2})(\d{2}) " + _HMS + r"(?:\.(\d{1,9}))?" + _END)
REDIS = re.compile(r"\d+:[XCSM] (\d{1,2}) " + _MON + r" (\d{4}) " + _HMS + r"(?:\.(\d{1,9}))?" + _END)
EPOCH = re.compile(r"\[?(\d{10}|\d{13})(?:\.(\d{1,9}))?(?!\d)")
TIME = re.compile(_HMS + _FRAC + _END)
LOGFMT = re.compile(r'(?:^|(?<=\s))(?:time|ts|timestamp)="?(?=\d)')
LOGFMT_EPOCH = re.compile(r"(\d{10})(?:\.(\d{1,9}))?(?![\d:-])")
CLF = re.compile(r"\[(\d{2})/" + _MON + r"/(\d{4}):" + _HMS + r" ([+-]\d{4})\]")
CACHE_SIZE = 4096
DAY = 86_400.0
# formats without a year or date: the leading characters that fix the date (the hour, for a time of day);
# two lines that share them cannot have a year (day) wrap between them
SAME_UNTIL = {"syslog": 6, "logcat": 5, "klog": 5, "time": 3}


@dataclass(frozen=True, slots=True)
class Partial:
    """A time written without its year (``month`` and ``day`` given) or without its date (``month == 0``)."""

    month: int
    day: int
    seconds: float  # since that day's midnight, UTC; may fall outside the day after a zone offset


Reading = float | Partial
Reader = Callable[[str], Reading | None]


def offset(text: str | None) -> int:
    """``Z``, ``+01:00``, ``-0130``, ``+01`` -> seconds east of UTC."""
    if not text or text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)


def fraction(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int | None:
    """Epoch seconds of a UTC calendar time, or None for one that does not exist (30 February)."""
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


def century(yy: str) -> int:
    """strptime's ``%y``: 69-99 are 19xx, 00-68 20xx."""
    return int(yy) + (1900 if int(yy) >= 69 else 2000)


def partial(month: int, day: int, h: str, mi: str, s: str, frac: str | None) -> Partial | None:
    hour, minute, second = int(h), int(mi), int(s)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    return Partial(month, day, hour * 3600 + minute * 60 + second + fraction(frac))


def epoch_number(value: float) -> float | None:
    """A number in a log's time field: seconds, ms, us or ns since the epoch, told apart by size."""
    size = abs(value)
    if size < 1e8:  # before 1973: a duration or a counter, not a time
        return None
    for scale in (1.0, 1e3, 1e6, 1e9):
        if size < 1e11 * scale:
            return value / scale
    return None


class Formats:
    """The readers of every built-in format, sharing one cache (one per log file)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], float | None] = {}
        self.readers: dict[str, Reader] = {
            "iso8601": self.iso8601, "json": self.json, "syslog": self.syslog, "slashed": self.slashed,
            "yy/mm/dd": self.yy_mm_dd, "yymmdd": self.yymmdd, "ctime": self.ctime, "logcat": self.logcat,
            "klog": self.klog, "redis": self.redis, "epoch": self.epoch, "time": self.time,
            "logfmt": self.logfmt, "clf": self.clf,
        }

    def _base(self, key: tuple[str, ...], y: int, mo: int, d: str, h: str, mi: str, s: str,
              tz: str | None = None) -> float | None:
        """The whole seconds of a calendar time, cached by its text (neighbouring lines share it)."""
        try:
            return self._cache[key]
        except KeyError:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            at = utc(y, mo, int(d), int(h), int(mi), int(s))
            value = self._cache[key] = None if at is None else float(at - offset(tz))
            return value

    def _calendar(self, key: tuple[str, ...], y: int, mo: int, d: str, h: str, mi: str, s: str,
                  frac: str | None, tz: str | None = None) -> float | None:
        base = self._base(key, y, mo, d, h, mi, s, tz)
        return None if base is None else base + fraction(frac)

    def iso8601(self, line: str, pos: int = 0) -> float | None:
        m = ISO.match(line, pos)
        if m is None:
            return None
        y, mo, d, h, mi, s, frac, tz = m.groups()
        return self._calendar(("iso", y, mo, d, h, mi, s, tz or ""), int(y), int(mo), d, h, mi, s, frac, tz)

    def json(self, line: str) -> float | None:
        if not line.lstrip().startswith("{"):
            return None
        for m in JSON_TIME.finditer(line):
            text, number = m.groups()
            if number is not None:
                at = epoch_number(float(number))
            else:
                at = self.iso8601(text)
                if at is None and (e := EPOCH.fullmatch(text)) is not None:
                    at = self._epoch(e)
            if at is not None:
                return at
        return None

    @staticmethod
    def syslog(line: str) -> Partial | None:
        m = SYSLOG.match(line)
        if m is None:
            return None
        mon, d, h, mi, s, frac = m.groups()
        return partial(MONTHS[mon], int(d), h, mi, s, frac)

    def slashed(self, line: str) -> float | None:
        m = SLASHED.match(line)
        if m is None:
            return None
        y, mo, d, h, mi, s, frac = m.groups()
        return self._calendar(("slashed", y, mo, d, h, mi, s), int(y), int(mo), d, h, mi, s, frac)

    def yy_mm_dd(self, line: str) -> float | None:
        m = YY_MM_DD.match(line)
        if m is None:
            return None
        y, mo, d, h, mi, s, frac = m.groups()
        return self._calendar(("yy/mm/dd", y, mo, d, h, mi, s), century(y), int(mo), d, h, mi, s, frac)

    def yymmdd(self, line: str) -> float | None:
        m = YYMMDD.match(line)
        if m is None:
            return None
        y, mo, d, h, mi, s = m.groups()
        return self._calendar(("yymmdd", y, mo, d, h, mi, s), century(y), int(mo), d, h, mi, s, None)

    def ctime(self, line: str) -> float | None:
        m = CTIME.match(line)
        if m is None:
            return None
        mon, d, h, mi, s, frac, y = m.groups()
        return self._calendar(("ctime", y, mon, d, h, mi, s), int(y), MONTHS[mon], d, h, mi, s, frac)

    @staticmethod
    def logcat(line: str) -> Partial | None:
        m = LOGCAT.match(line)
        if m is None:
            return None
        mo, d, h, mi, s, frac = m.groups()
        return partial(int(mo), int(d), h, mi, s, frac)

    @staticmethod
    def klog(line: str) -> Partial | None:
        m = KLOG.match(line)
        if m is None:
            return None
        mo, d, h, mi, s, frac = m.groups()
        return partial(int(mo), int(d), h, mi, s, frac)

    def redis(self, line: str) -> float | None:
        m = REDIS.match(line)
        if m is None:
            return None
        d, mon, y, h, mi, s, frac = m.groups()
        return self._calendar(("redis", y, mon, d, h, mi, s), int(y), MONTHS[mon], d, h, mi, s, frac)

    def epoch(self, line: str) -> float | None:
        m = EPOCH.match(line)
        return None if m is None else self._epoch(m)

    @staticmethod
    def _epoch(m: re.Match[str]) -> float:
        whole, frac = m.group(1), m.group(2)
        if len(whole) == 13:
            return int(whole) / 1000.0
        return int(whole) + fraction(frac)

    @staticmethod
    def time(line: str) -> Partial | None:
        m = TIME.match(line)
        if m is None:
            return None
        h, mi, s, frac = m.groups()
        at = partial(1, 1, h, mi, s, frac)
        return None if at is None else Partial(0, 0, at.seconds)

    def logfmt(self, line: str) -> float | None:
        for m in LOGFMT.finditer(line):
            at = self.iso8601(line, m.end())
            if at is None and (e := LOGFMT_EPOCH.match(line, m.end())) is not None:
                at = int(e.group(1)) + fraction(e.group(2))
            if at is not None:
                return at
        return None

    def clf(self, line: str) -> float | None:
        m = CLF.search(line)
        if m is None:
            return None
        d, mon, y, h, mi, s, tz = m.groups()
        return self._calendar(("clf", d, mon, y, h, mi, s, tz), int(y), MONTHS[mon], d, h, mi, s, None, tz)
