"""Business hours: when people answer on a channel, and service-level due times counted in open
time only.

Pure: the standard library and zoneinfo, no models and no settings, so the inbox, the escalation
stage and the figures all compute due times the same way and tests can try every edge cheaply.

A `Schedule` is weekly opening intervals read on the wall clock of one IANA zone, plus holidays
(local dates closed all day). Business time is real elapsed time inside the opening intervals:
on the night clocks go back an hour, 01:00-03:00 is open for three real hours; on the night they
jump forward, for one.

Each wall-clock time on a local date becomes the first instant the local clock reads that date
and time or later:
- a time that happens twice (the hour repeated when clocks go back) is its first occurrence;
- a time that never happens (the hour skipped when clocks go forward) is the moment of the jump,
  so an interval opening at 02:30 on that night opens when the clock jumps to 03:00, and an
  interval lying wholly inside the skipped hour is empty.
The same rule for opening and closing times keeps intervals in order and makes touching ones
(09:00-12:00 and 12:00-17:00, or Monday 22:00-midnight and Tuesday 00:00-06:00) meet exactly.

All methods take aware datetimes (naive ones raise ValueError) and return aware datetimes in UTC.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A search for the next opening gives up after this many days in a row without one: a schedule
# closed that long is a mistake (every day a holiday, or hours only on holidays), not a due time.
MAX_CLOSED_DAYS = 400

WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Schedule:
    """Weekly opening hours in a time zone, with holidays.

    `weekly` holds `(weekday, opens, closes)` with weekday 0 for Monday .. 6 for Sunday and naive
    `datetime.time` values on the zone's wall clock. `closes=None` means midnight at the end of
    that day (`time(0)` is refused as a closing time: it would read as the start of the day).
    An interval never crosses midnight: a night shift is two entries, e.g. `(0, time(22), None)`
    and `(1, time(0), time(6))`, which meet and count as one stretch. Intervals on one day may
    touch but not overlap; they are kept sorted, so two schedules with the same hours are equal.

    `holidays` are local dates closed the whole day (an interval of the day before that runs to
    midnight still counts; one starting at midnight on the holiday does not).
    """

    zone: str
    weekly: tuple[tuple[int, time, time | None], ...]
    holidays: frozenset[date] = frozenset()
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _by_weekday: tuple[tuple[tuple[time, time | None], ...], ...] = field(init=False, repr=False,
                                                                         compare=False)

    def __post_init__(self):
        tz = _zone_named(self.zone)
        if isinstance(self.weekly, (str, bytes)) or not isinstance(self.weekly, Iterable):
            raise ValueError(f"weekly must be a tuple of (weekday, opens, closes), got {self.weekly!r}")
        weekly = tuple(sorted((_checked_interval(entry) for entry in self.weekly),
                              key=lambda entry: (entry[0], entry[1])))
        if not weekly:
            raise ValueError("a schedule needs at least one opening interval "
                             "(with no business hours configured, use ALWAYS_OPEN)")
        by_weekday: list[list[tuple[time, time | None]]] = [[] for _ in range(7)]
        for weekday, opens, closes in weekly:
            day = by_weekday[weekday]
            if day and (day[-1][1] is None or day[-1][1] > opens):
                raise ValueError(f"{WEEKDAY_NAMES[weekday]}: {_span(*day[-1])} overlaps {_span(opens, closes)}")
            day.append((opens, closes))
        object.__setattr__(self, "weekly", weekly)
        object.__setattr__(self, "holidays", _checked_holidays(self.holidays))
        object.__setattr__(self, "_tz", tz)
        object.__setattr__(self, "_by_weekday", tuple(tuple(day) for day in by_weekday))

    @property
    def tz(self) -> ZoneInfo:
        """The zone as a ZoneInfo, to show a due time on the schedule's own clock."""
        return self._tz

    def is_open(self, at: datetime) -> bool:
        """Whether `at` falls inside an opening interval (open at the opening instant, closed at
        the closing one)."""
        at = _as_utc(at, "at")
        local_day = at.astimezone(self._tz).date()
        # The next day's hours too: where a clock goes back across midnight (St John's until
        # 2011), an instant after the new day's first midnight can read as the day before.
        for day in (local_day, local_day + _ONE_DAY):
            for opens, closes in self._intervals_on(day):
                if opens <= at < closes:
                    return True
        return False

    def next_opening(self, at: datetime) -> datetime:
        """The first open instant at or after `at`: `at` itself (in UTC) when open then.
        Raises ValueError when there is none within MAX_CLOSED_DAYS days."""
        at = _as_utc(at, "at")
        opens, _ = next(self._open_intervals(at))
        return opens

    def add_business_time(self, start: datetime, amount: timedelta) -> datetime:
        """The due time: the instant when `amount` of open time has passed since `start`.

        From a closed moment the count starts at the next opening. An amount that runs out exactly
        at a closing is due at that closing, not at the next opening. A zero amount is due at
        `start`. Raises ValueError for a negative amount, when the schedule has no opening
        within MAX_CLOSED_DAYS days in a row on the way, or when the due time would be past the
        last date Python knows.
        """
        start = _as_utc(start, "start")
        if not isinstance(amount, timedelta):
            raise TypeError(f"amount must be a timedelta, not {type(amount).__name__}")
        if amount < timedelta(0):
            raise ValueError(f"amount must not be negative, got {amount}")
        if not amount:
            return start
        remaining = amount
        try:
            for opens, closes in self._open_intervals(start):
                if closes - opens >= remaining:
                    return opens + remaining
                remaining -= closes - opens
        except OverflowError:
            raise ValueError(f"{amount} of open time from {start.isoformat()} ends past the calendar") from None
        raise AssertionError("unreachable: _open_intervals never ends without until")

    def business_time_between(self, start: datetime, end: datetime) -> timedelta:
        """The open time between two instants (zero when closed throughout). Raises ValueError
        when `end` is before `start`."""
        start, end = _as_utc(start, "start"), _as_utc(end, "end")
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        total = timedelta(0)
        for opens, closes in self._open_intervals(start, until=end):
            total += min(closes, end) - opens
        return total

    def _open_intervals(self, after: datetime, until: datetime | None = None
                        ) -> Iterator[tuple[datetime, datetime]]:
        """The opening intervals (UTC, in order, never empty) that end after `after`, the first
        clipped to start at `after`. With `until`, only those opening before it; without, endless,
        raising ValueError after MAX_CLOSED_DAYS days in a row without an opening."""
        first_day = after.astimezone(self._tz).date()
        last_day = until.astimezone(self._tz).date() + _ONE_DAY if until is not None else None
        last_opening_day = day = first_day
        while last_day is None or day <= last_day:
            for opens, closes in self._intervals_on(day):
                if until is not None and opens >= until:
                    return
                if closes > after:
                    last_opening_day = day
                    yield max(opens, after), closes
            if until is None and (day - last_opening_day).days >= MAX_CLOSED_DAYS:
                raise ValueError(f"no opening within {MAX_CLOSED_DAYS} days after {after.isoformat()}: "
                                 "check the schedule's weekly hours and holidays")
            day += _ONE_DAY

    def _intervals_on(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        """The day's opening intervals as UTC instants, skipping any a DST jump left empty."""
        if day in self.holidays:
            return
        for opens, closes in self._by_weekday[day.weekday()]:
            opening = _first_instant_reading(self._tz, day, opens)
            closing = (_first_instant_reading(self._tz, day + _ONE_DAY, time(0)) if closes is None
                       else _first_instant_reading(self._tz, day, closes))
            if closing > opening:
                yield opening, closing


def _first_instant_reading(tz: ZoneInfo, day: date, wall: time) -> datetime:
    """The first instant (UTC) at which the clock in `tz` reads `day` `wall` or later."""
    naive = datetime.combine(day, wall)
    # fold=0 is the first of a time that happens twice.
    instant = naive.replace(tzinfo=tz).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    # `wall` is skipped by a jump forward. For a skipped time, fold=0 reads it with the offset
    # before the jump (an instant after the jump) and fold=1 with the offset after (one before),
    # so the jump lies between them; zoneinfo does not expose it, so find it by bisection on
    # whole seconds (transitions in the tz database fall on whole seconds).
    before = math.floor(naive.replace(tzinfo=tz, fold=1).timestamp())
    after = math.ceil(instant.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= naive:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _zone_named(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ValueError(f"zone must be an IANA time zone name such as 'Europe/London', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/London'") from None


def _checked_interval(entry) -> tuple[int, time, time | None]:
    try:
        weekday, opens, closes = entry
    except (TypeError, ValueError):
        raise ValueError(f"an opening interval is (weekday, opens, closes), got {entry!r}") from None
    if isinstance(weekday, bool) or not isinstance(weekday, int) or not 0 <= weekday <= 6:
        raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), got {weekday!r}")
    day = WEEKDAY_NAMES[weekday]
    if not isinstance(opens, time) or opens.tzinfo is not None:
        raise ValueError(f"{day}: opens must be a naive datetime.time on the zone's clock, got {opens!r}")
    if closes is None:
        return weekday, opens, None
    if not isinstance(closes, time) or closes.tzinfo is not None:
        raise ValueError(f"{day}: closes must be a naive datetime.time or None (midnight at the end "
                         f"of the day), got {closes!r}")
    if closes == time(0):
        raise ValueError(f"{day}: closes=time(0) is ambiguous; use closes=None for midnight at the end of the day")
    if closes <= opens:
        raise ValueError(f"{day}: closes {closes.isoformat()} must be after opens {opens.isoformat()} "
                         "(split a night shift at midnight into two intervals)")
    return weekday, opens, closes


def _checked_holidays(holidays: Iterable[date]) -> frozenset[date]:
    if isinstance(holidays, (str, date)):
        raise ValueError(f"holidays must be a collection of dates, got {holidays!r}")
    holidays = frozenset(holidays)
    for holiday in holidays:
        # A datetime is a date too, but would never equal the local dates looked up.
        if not isinstance(holiday, date) or isinstance(holiday, datetime):
            raise ValueError(f"holidays must be local dates (datetime.date), got {holiday!r}")
    return holidays


def _as_utc(value: datetime, name: str) -> datetime:
    # Aware datetimes sharing a tzinfo compare and subtract by wall time, ignoring DST; UTC does not.
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def _span(opens: time, closes: time | None) -> str:
    end = "24:00" if closes is None else closes.isoformat(timespec="minutes")
    return f"{opens.isoformat(timespec='minutes')}-{end}"


# Used where no business hours are configured: every instant is open, so business time is real time.
ALWAYS_OPEN = Schedule("UTC", tuple((weekday, time(0), None) for weekday in range(7)))
