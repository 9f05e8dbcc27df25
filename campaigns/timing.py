"""When time-based steps are due, on the contact's clock, and how a campaign's throttle spreads
its send times: pure functions of their inputs.

A wall-clock time is read in the contact's zone (compliance.gate.contact_zones: the profile's
timezone, else the phone number's, else OMNI_DEFAULT_TIMEZONE; the first when a phone spans
several). Across daylight saving time: a time the clocks skip that day runs as much later as
they skip (02:30 on a spring-forward night runs at 03:30), and a time the clocks pass twice runs
the first time.
"""
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils.dateparse import parse_date, parse_datetime

from compliance.gate import contact_zones, zone_named

from .step_settings import WEEKDAYS


def contact_zone(contact) -> ZoneInfo:
    zones, _ = contact_zones(contact)
    return zone_named(zones[0]) or ZoneInfo("UTC")


def wall_clock(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) the clocks of `zone` show `at` on `day` (see the module's note on DST)."""
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(UTC)


def next_wall_clock(day: date, at: time, zone: ZoneInfo, now: datetime) -> datetime:
    """The instant the clocks of `zone` show `at` on `day`, or on the first day after it when
    that moment is at or after `now`."""
    moment = wall_clock(max(day, now.astimezone(zone).date()), at, zone)  # an earlier day's has passed
    return moment if moment >= now else next_local_time(now, zone, at)


def throttled(due: list[tuple[datetime, int]], per_minute: int | None) -> list[datetime]:
    """The send times of `due`, (send time, contact id) pairs, spread so that at most
    `per_minute` fall in any rolling minute, in the order given: in the order of their send time
    and contact, each goes at its own time, or a minute after the one `per_minute` places before
    it if that is later (those due at one moment go per_minute at a time, a minute apart)."""
    if not per_minute:
        return [at for at, _ in due]
    spread = [None] * len(due)
    placed = []  # the send times given so far, in order
    for index in sorted(range(len(due)), key=due.__getitem__):
        at = due[index][0]
        if len(placed) >= per_minute:
            at = max(at, placed[-per_minute] + timedelta(minutes=1))
        spread[index] = at
        placed.append(at)
    return spread


def next_local_time(now: datetime, zone: ZoneInfo, at: time, days: list[str] | None = None) -> datetime:
    """The first instant after `now` when the clocks of `zone` show `at`, on one of `days`
    (names as in step_settings.WEEKDAYS; any day when empty)."""
    allowed = {WEEKDAYS.index(day) for day in days} if days else set(range(7))
    today = now.astimezone(zone).date()
    for ahead in range(8):
        day = today + timedelta(days=ahead)
        if day.weekday() in allowed:
            candidate = wall_clock(day, at, zone)
            if candidate > now:
                return candidate
    raise AssertionError("a week always holds an allowed day")  # pragma: no cover


def parse_time_of_day(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def date_value(value, zone: ZoneInfo) -> datetime | None:
    """A date or datetime attribute or property as an instant: an ISO datetime with an offset as
    it is, one without in the contact's zone, a bare date at midnight on their clock. None when
    the value is no date."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        moment = parse_datetime(text)
        if moment is None:
            day = parse_date(text)
            return wall_clock(day, time(0, 0), zone) if day else None
    except (ValueError, OverflowError):
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone).astimezone(UTC)
    return moment.astimezone(UTC)

