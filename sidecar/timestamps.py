"""Reading a log line's own time, for replay.

Auto-detected at the start of a line (in this order, the last format that
worked tried first):

- ISO-8601: ``2026-11-25T10:00:01Z``, ``2026-11-25T10:00:01.123+01:00``,
  ``2026-11-25 10:00:01`` (naive means UTC), optionally inside ``[...]``;
- Python logging: ``2026-11-25 10:00:01,123``;
- syslog: ``Nov 25 10:00:01`` (optionally after ``<PRI>``; the year is given,
  and moves on by one when the month wraps from December to January);
- epoch seconds (10 digits, optional fraction) or milliseconds (13 digits);
- Apache/nginx common log format ``[25/Nov/2026:10:00:01 +0000]``, anywhere.

A source may say how instead (``sources.NAME.timestamp`` in suture.yaml):
``format`` is a strptime format (or ``iso8601``/``auto``, ``epoch``), and
``regex`` a regex with a named group ``ts`` that finds the text to parse
(with ``format`` if given, else auto-detected). Without ``regex``, a
``format`` is matched at the start of the line.

Parsing is cached by the timestamp's text, since neighbouring lines share it.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime

from suture.engine.errors import SutureError

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_MON = "(" + "|".join(MONTHS) + ")"

ISO = re.compile(
    r"\[?(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)?(?![\d:])"
)
SYSLOG = re.compile(r"(?:<\d{1,3}>)?" + _MON + r" {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\b")
EPOCH = re.compile(r"\[?(\d{10}|\d{13})(?:\.(\d{1,9}))?(?!\d)")
CLF = re.compile(r"\[(\d{2})/" + _MON + r"/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
CACHE_SIZE = 4096

# strptime directive -> a regex for the text it reads (to find it at the start of a line)
_DIRECTIVES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}", "I": r"\d{1,2}",
    "M": r"\d{1,2}", "S": r"\d{1,2}", "f": r"\d{1,6}", "j": r"\d{1,3}", "b": r"[A-Za-z]{3}", "h": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+", "a": r"[A-Za-z]{3}", "A": r"[A-Za-z]+", "p": r"[AaPp][Mm]",
    "z": r"(?:Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)", "Z": r"[A-Za-z]{1,5}", "U": r"\d{1,2}", "W": r"\d{1,2}",
    "w": r"\d", "u": r"\d", "V": r"\d{1,2}", "G": r"\d{4}", "%": "%",
}


class TimestampError(SutureError):
    """A configured timestamp format or regex cannot be used."""


def _offset(text: str | None) -> int:
    """``Z``, ``+01:00``, ``-0130``, ``+01`` -> seconds east of UTC."""
    if not text or text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)


def _fraction(digits: str | None) -> float:
    return int(digits) / 10 ** len(digits) if digits else 0.0


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
    try:
        datetime(year, month, day, hour, minute, second)  # validates (no 30 February)
    except ValueError:
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


def strptime_regex(fmt: str) -> str:
    """A regex for the text ``fmt`` reads (whitespace in a format matches any run of it)."""
    out = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            directive = fmt[i + 1]
            if directive not in _DIRECTIVES:
                raise TimestampError(f"timestamp format {fmt!r}: %{directive} is not supported")
            out.append(_DIRECTIVES[directive])
            i += 2
            continue
        out.append(r"\s+" if ch.isspace() else re.escape(ch))
        i += 1
    return "".join(out)


class Timestamps:
    """``parse(line)`` -> epoch seconds (UTC) or None. One per log file (it keeps state)."""

    def __init__(self, *, format: str | None = None, regex: str | None = None, year: int | None = None) -> None:
        self.year = year if year is not None else datetime.now(UTC).year
        self._syslog_year = self.year
        self._syslog_month = 0
        self._cache: dict[object, float | None] = {}
        self._regex: re.Pattern[str] | None = None
        self._find: Callable[[str], re.Match[str] | None] = re.compile("(?!)").match
        self._strptime: str | None = None
        self._auto: list[Callable[[str], float | None]] = [self._iso, self._syslog, self._epoch, self._clf]
        if format is not None and format.lower() in ("iso8601", "auto"):
            format = None
        elif format is not None and format.lower() == "epoch":
            self._auto = [self._epoch]
            format = None
        if format is not None:
            strptime_regex(format)  # checks the directives
            self._strptime = format
        if regex is not None:
            try:
                self._regex = re.compile(regex)
            except re.error as exc:
                raise TimestampError(f"timestamp regex /{regex}/: {exc}") from exc
            if "ts" not in self._regex.groupindex:
                raise TimestampError(f"timestamp regex /{regex}/ needs a named group 'ts', as in (?P<ts>...)")
            self._find = self._regex.search  # anywhere in the line
        elif format is not None:
            self._regex = re.compile(r"\[?(?P<ts>" + strptime_regex(format) + ")")
            self._find = self._regex.match  # at the start of the line

    def parse(self, line: str) -> float | None:
        """The time written on ``line``, or None if it has none."""
        if self._regex is None:
            return self._detect(line)
        m = self._find(line)
        if m is None:
            return None
        text = m.group("ts")
        if self._strptime is None:
            return self._detect(text)
        return self._parse_strptime(text)

    # -- auto-detection --

    def _detect(self, line: str) -> float | None:
        for i, parser in enumerate(self._auto):
            at = parser(line)
            if at is not None:
                if i:  # try the format that worked first next time
                    self._auto.insert(0, self._auto.pop(i))
                return at
        return None

    def _cached(self, key: object, compute: Callable[[], float | None]) -> float | None:
        try:
            return self._cache[key]
        except KeyError:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            value = self._cache[key] = compute()
            return value

    def _iso(self, line: str) -> float | None:
        m = ISO.match(line)
        if m is None:
            return None
        y, mo, d, h, mi, s, frac, tz = m.groups()
        base = self._cached(("iso", y, mo, d, h, mi, s, tz), lambda: self._iso_base(y, mo, d, h, mi, s, tz))
        return None if base is None else base + _fraction(frac)

    @staticmethod
    def _iso_base(y: str, mo: str, d: str, h: str, mi: str, s: str, tz: str | None) -> float | None:
        at = _utc(int(y), int(mo), int(d), int(h), int(mi), int(s))
        return None if at is None else float(at - _offset(tz))

    def _syslog(self, line: str) -> float | None:
        m = SYSLOG.match(line)
        if m is None:
            return None
        mon, d, h, mi, s, frac = m.groups()
        month = MONTHS[mon]
        if self._syslog_month == 12 and month == 1:
            self._syslog_year += 1
        self._syslog_month = month
        at = _utc(self._syslog_year, month, int(d), int(h), int(mi), int(s))
        return None if at is None else at + _fraction(frac)

    @staticmethod
    def _epoch(line: str) -> float | None:
        m = EPOCH.match(line)
        if m is None:
            return None
        whole, frac = m.groups()
        if len(whole) == 13:
            return int(whole) / 1000.0
        return int(whole) + _fraction(frac)

    def _clf(self, line: str) -> float | None:
        m = CLF.search(line)
        if m is None:
            return None
        d, mon, y, h, mi, s, tz = m.groups()
        return self._cached(("clf", d, mon, y, h, mi, s, tz),
                            lambda: self._iso_base(y, str(MONTHS[mon]), d, h, mi, s, tz))

    # -- a configured strptime format --

    def _parse_strptime(self, text: str) -> float | None:
        fmt = self._strptime
        assert fmt is not None
        return self._cached(("strptime", text), lambda: self._strptime_now(text, fmt))

    def _strptime_now(self, text: str, fmt: str) -> float | None:
        if "%Y" not in fmt and "%y" not in fmt and "%G" not in fmt:
            text, fmt = f"{text} {self.year}", f"{fmt} %Y"  # so 29 February parses in a leap year
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
