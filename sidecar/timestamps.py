"""Reading a log line's own time, for replay: the format, and the calendar.

Pure and clock-free: everything it knows about the world (the year to start
from, the file's mtime) is given to it. One :class:`Timestamps` per log file,
fed the file's lines in order.

**Which format.** Without configuration every format of :mod:`.logtime` is
tried, the last one that worked first (so a file's format is found once and
each line then costs one regex). A source may say how instead
(``sources.NAME.timestamp`` in suture.yaml): ``format`` is a strptime format,
the name of one built-in format (``syslog``, ``klog``, ... as in
the table in :mod:`.logtime`; ``iso8601`` and ``auto`` mean every one,
as without configuration), and ``regex`` a regex with a named group ``ts``
that finds the text to read (with ``format`` if given, else auto-detected).
Without ``regex``, a ``format`` is matched at the start of the line.

**The calendar.** Some formats leave out the year (syslog, logcat, klog, a
strptime format without ``%Y``) or the whole date (logback's ``10:00:01.123``).
Such a time is placed:

- after an earlier line of the file with a time: in that line's year (its
  day, for a time of day alone), moved on by a year (a day) when it would
  otherwise be more than a day (an hour) before that line: December to
  January, 23:59 to 00:00. A line a little out of order stays where it is;
- for the file's first time: in ``year`` if given (``suture replay
  --year``; a time of day alone ignores it); else at the latest year (date)
  that puts it no later than
  ``reference`` (the file's mtime) plus 14 hours. The file's lines were
  written before it was last modified, and 14 hours is the largest zone
  offset: times without a zone are read as UTC, so a log written in local
  time east of UTC runs up to 14 hours "after" its mtime.

So a year-less file is placed right when it spans less than a year, and a
date-less one when it spans less than ten hours or lies within one UTC day
(or when a line before its first time of day has a date).
:attr:`Timestamps.placed` says whether a time was placed from ``reference``
(replay then checks the file did not end after it).

Without ``year`` and ``reference`` such a time cannot be placed and reads as
no time at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from suture.engine.errors import SutureError

from .logtime import CACHE_SIZE, DAY, SAME_UNTIL, Formats, Partial, Reader, Reading, utc

SLACK = 14 * 3600.0  # the largest zone offset: how far a zone-less line may lie after its file's mtime
YEAR_BACK = DAY  # a year-less time this far before the previous line's is in the next year
DAY_BACK = 3600.0  # a date-less time this far before the previous line's is on the next day
AUTO = ("iso8601", "auto")

# strptime directive -> a regex for the text it reads (to find it at the start of a line)
_DIRECTIVES = {
    "Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}", "I": r"\d{1,2}",
    "M": r"\d{1,2}", "S": r"\d{1,2}", "f": r"\d{1,6}", "j": r"\d{1,3}", "b": r"[A-Za-z]{3}", "h": r"[A-Za-z]{3}",
    "B": r"[A-Za-z]+", "a": r"[A-Za-z]{3}", "A": r"[A-Za-z]+", "p": r"[AaPp][Mm]",
    "z": r"(?:Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?)", "Z": r"[A-Za-z]{1,5}", "U": r"\d{1,2}", "W": r"\d{1,2}",
    "w": r"\d", "u": r"\d", "V": r"\d{1,2}", "G": r"\d{4}", "%": "%",
}
_YEAR_DIRECTIVES = ("%Y", "%y", "%G")
_DATE_DIRECTIVES = ("%d", "%j", "%m", "%b", "%B", "%h")


class TimestampError(SutureError):
    """A configured timestamp format or regex cannot be used."""


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


def _year_of(at: float) -> int:
    return datetime.fromtimestamp(at, UTC).year


class Timestamps:
    """``parse(line)`` -> epoch seconds (UTC) or None, for one file's lines in order."""

    def __init__(self, *, format: str | None = None, regex: str | None = None, year: int | None = None,
                 reference: float | None = None) -> None:
        self.year = year
        self.reference = reference
        self.placed = False  # a time was placed on the calendar from `reference`
        self.partial = False  # the last time parse() returned was written without a year or date
        self._prev: float | None = None  # the last time parse() returned
        self._formats = Formats()
        self._auto: list[tuple[str, Reader]] = list(self._formats.readers.items())
        self._cache: dict[str, Reading | None] = {}
        self._midnights: dict[tuple[int, int, int], float | None] = {}
        self._regex: re.Pattern[str] | None = None
        self._find: Callable[[str], re.Match[str] | None] = re.compile("(?!)").match
        self._strptime: str | None = None
        if format is not None and format.lower() in AUTO:
            format = None
        elif format is not None and format.lower() in self._formats.readers:
            self._auto = [(format.lower(), self._formats.readers[format.lower()])]
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

    @property
    def format(self) -> str:
        """The format the last time was read in (a configured strptime format as itself)."""
        return self._strptime or self._auto[0][0]

    def parse(self, line: str) -> float | None:
        """The time written on ``line``, placed on the calendar; the next line is placed after it."""
        reading = self.read(line)
        at = self.place(reading)
        if at is not None:
            self._prev = at
            self.partial = isinstance(reading, Partial)
        return at

    def read(self, line: str) -> Reading | None:
        """What ``line``'s time says, not yet placed on the calendar, changing nothing (a look, not a step)."""
        if self._regex is None:
            return self._detect(line)
        m = self._find(line)
        if m is None:
            return None
        text = m.group("ts")
        if self._strptime is None:
            return self._detect(text)
        return self._read_strptime(text, self._strptime)

    # -- which format --

    def _detect(self, line: str) -> Reading | None:
        for i, (_name, reader) in enumerate(self._auto):
            at = reader(line)
            if at is not None:
                if i:  # try the format that worked first next time
                    self._auto.insert(0, self._auto.pop(i))
                return at
        return None

    def _read_strptime(self, text: str, fmt: str) -> Reading | None:
        try:
            return self._cache[text]
        except KeyError:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            value = self._cache[text] = _strptime(text, fmt)
            return value

    # -- the calendar --

    def place(self, reading: Reading | None, after: float | None = None) -> float | None:
        """Epoch seconds of ``reading``, a partial time placed as the module docstring says.

        ``after``: place it after that time instead of after the last line parse() returned.
        """
        if reading is None or isinstance(reading, float):
            return reading
        prev = self._prev if after is None else after
        if reading.month == 0:
            return self._place_time(reading.seconds, prev)
        return self._place_date(reading, prev)

    @property
    def same_until(self) -> int | None:
        """How many leading characters two lines of this file's format share when no wrap can lie between
        them (the date, for a format without a year; the hour, for a time of day); None: a configured format."""
        if self._regex is not None:
            return None
        return SAME_UNTIL.get(self._auto[0][0])

    def _place_time(self, seconds: float, prev: float | None) -> float | None:
        if prev is not None:  # the earliest of the day before, that day and the next not too far before
            at = prev - prev % DAY - DAY + seconds
            while at < prev - DAY_BACK:
                at += DAY
            return at
        if self.reference is None:
            return None
        self.placed = True
        latest = self.reference + SLACK
        at = latest - latest % DAY + seconds
        return at - DAY if at > latest else at

    def _place_date(self, p: Partial, prev: float | None) -> float | None:
        if prev is not None:
            year = _year_of(prev)
            for y in range(year - 1, year + 9):  # the earliest not too far before (9: 29 February)
                at = self._at(y, p)
                if at is not None and at >= prev - YEAR_BACK:
                    return at
            return None
        if self.year is not None:
            return self._at(self.year, p)
        if self.reference is None:
            return None
        self.placed = True
        latest = self.reference + SLACK
        year = _year_of(latest)
        for y in range(year, year - 9, -1):
            at = self._at(y, p)
            if at is not None and at <= latest:
                return at
        return None

    def _at(self, year: int, p: Partial) -> float | None:
        key = (year, p.month, p.day)
        try:
            midnight = self._midnights[key]
        except KeyError:
            if len(self._midnights) >= CACHE_SIZE:
                self._midnights.clear()
            day = utc(year, p.month, p.day)
            midnight = self._midnights[key] = None if day is None else float(day)
        return None if midnight is None else midnight + p.seconds


def _strptime(text: str, fmt: str) -> Reading | None:
    """``text`` read by a configured strptime format; a Partial when the format has no year or no date."""
    has_year = any(d in fmt for d in _YEAR_DIRECTIVES)
    has_date = any(d in fmt for d in _DATE_DIRECTIVES)
    if not has_year and has_date:
        text, fmt = f"{text} 2000", f"{fmt} %Y"  # a leap year, so 29 February reads
    try:
        parsed = datetime.strptime(text, fmt)
    except ValueError:
        return None
    shift = parsed.utcoffset()
    east = shift.total_seconds() if shift is not None else 0.0
    if has_year:
        return parsed.replace(tzinfo=UTC).timestamp() - east
    seconds = parsed.hour * 3600 + parsed.minute * 60 + parsed.second + parsed.microsecond / 1e6 - east
    return Partial(parsed.month, parsed.day, seconds) if has_date else Partial(0, 0, seconds)
