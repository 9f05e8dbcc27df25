"""Date triggers: a journey that enrolls a contact at a moment set by a date.

The moment is the date moved by the journey's offset in days, at its local time of day, both read
on the contact's own clock (their profile's zone, else their phone number's, else the default:
compliance.gate.contact_zones, as quiet hours read it). So "-1 day at 09:00" fires at 09:00 in
New York for a New Yorker and at 09:00 in Berlin for a Berliner, whatever either's UTC offset is
that day. A local time a DST change skips (02:30 on the spring-forward night) fires at the
instant the clocks jump past it; one the change repeats fires at its first occurrence.

Two sources of the date:
- a contact attribute (trigger "A date attribute"): the tick stage here looks at each such
  journey at most every DATE_CHECK_SECONDS and enrolls the contacts whose moment passed since it
  last looked (its watermark, Journey.date_trigger_checked_until). With a local time, only a look
  in which that time comes in some zone reads contacts (four an hour). Each (journey, contact, date
  value) enrolls at most once: the enrollment's trigger_key is unique in its journey, and the
  journey row is claimed (SKIP LOCKED) so two ticks never look at the same window;
- a property of the trigger event (an event trigger with trigger_date_property): the event
  enrolls the contact at once, with their first step due at the moment (campaigns/enrolling.py).
"""
import logging
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Collate, Length
from django.utils.dateparse import parse_date, parse_datetime

from compliance.gate import contact_zones, zone_named
from contacts.models import Contact
from omni.lib.claims import excluding

from .admission import Wanted, enroll_many
from .models import RUNNING_JOURNEY_STATUSES, Journey, JourneyVersion, TriggerType
from .tick_report import TickReport

log = logging.getLogger(__name__)

UTC = dt_timezone.utc
# How often one journey's contacts are searched for dates that came: each search filters every
# contact's attribute (no index covers an arbitrary attribute), so once a minute per journey keeps
# that affordable, at the price of firing up to a minute after the moment.
DATE_CHECK_SECONDS = 60
# Journeys claimed per transaction: each costs a few queries, whatever its number of contacts.
DATE_JOURNEY_BATCH = 20
# After the tick stood still (an outage), moments older than this are skipped rather than fired
# late: a reminder for a date long gone does more harm than good.
DATE_CATCH_UP = timedelta(days=1)
# Local dates run from UTC-12 to UTC+14, and a date-time value's day may be read in another zone:
# the SQL range of date values searched is widened by this much on each side, then each
# contact's moment is computed exactly.
ZONE_SPREAD = timedelta(days=2)
MAX_BEHIND_UTC, MAX_AHEAD_OF_UTC = timedelta(hours=12), timedelta(hours=14)
# Every zone's UTC offset in use is a whole number of quarter hours (Nepal's +05:45, Chatham's +12:45).
QUARTER_HOUR = timedelta(minutes=15)


def parse_date_value(value) -> date | datetime | None:
    """A stored date ("2026-03-29") or date and time ("2026-03-29T15:00:00+02:00"; without an
    offset, a time on the contact's clock) as a date or datetime; None when it is neither."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) <= 10:
            return parse_date(value)
        return parse_datetime(value)
    except ValueError:
        return None


def moment_of(value, zone_name: str, offset_days: int, local_time: time | None) -> datetime | None:
    """The UTC instant a date value fires at for a contact whose clock is in `zone_name`: its day
    (on that clock) moved by `offset_days`, at `local_time` (else the value's own time of day, or
    midnight for a plain date). None when the value is not a date or the day is out of range."""
    parsed = parse_date_value(value)
    zone = zone_named(zone_name) or UTC
    if parsed is None:
        return None
    if isinstance(parsed, datetime):
        local = parsed.astimezone(zone) if parsed.tzinfo is not None else parsed
        day, clock = local.date(), local_time or local.time()
    else:
        day, clock = parsed, local_time or time(0)
    try:
        day = day + timedelta(days=offset_days)
        # fold=0: a skipped local time is read with the offset before the change (02:30 EST is
        # 03:30 EDT), a repeated one as its first occurrence.
        return datetime.combine(day, clock.replace(tzinfo=None, fold=0), tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return None


def contact_zone(contact) -> str:
    """The zone a contact's dates are read in: the first of contact_zones() (a phone number
    spanning zones gives several; its first is as good a guess as any)."""
    return contact_zones(contact)[0][0]


def date_trigger_context(version: JourneyVersion, value, moment: datetime) -> dict:
    """What a date-attribute enrollment keeps of its trigger (Enrollment.context["trigger"])."""
    name = version.trigger_date_attribute
    return {"type": TriggerType.DATE_ATTRIBUTE.value, "attribute": name, "date": value,
            "moment": moment.isoformat(), "properties": {name: value}}


def date_trigger_key(contact_id: int, value) -> str:
    return f"date:{contact_id}:{value}"[:300]


def fire_date_triggers_batch(now, report: TickReport, handled: set | None = None) -> int:
    """One tick stage batch: claim up to DATE_JOURNEY_BATCH active date-attribute journeys not
    looked at for DATE_CHECK_SECONDS, enroll the contacts whose moment passed since, and move
    each journey's watermark to `now`. Returns how many journeys it claimed."""
    due = Q(date_trigger_checked_until__isnull=True) | Q(
        date_trigger_checked_until__lte=now - timedelta(seconds=DATE_CHECK_SECONDS))
    # Most ticks find no journey due: one query then, without a transaction.
    if not excluding(_date_journeys().filter(due), handled).exists():
        return 0
    with transaction.atomic():
        journeys = excluding(_date_journeys().filter(due), handled).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            # NO KEY: workers inserting enrollments and visits of the journey meanwhile take KEY
            # SHARE on its row, which FOR UPDATE would make them wait for.
            journeys = journeys.select_for_update(skip_locked=True, no_key=True, of=("self",))
        journeys = list(journeys[:DATE_JOURNEY_BATCH])
        if not journeys:
            return 0
        versions = JourneyVersion.objects.in_bulk([j.live_version_id for j in journeys])
        looked = []
        for journey in journeys:
            version = versions[journey.live_version_id]
            version.journey = journey
            since = max(journey.date_trigger_checked_until or version.published_at, now - DATE_CATCH_UP)
            if handled is not None:
                handled.add(journey.pk)
            try:
                with transaction.atomic():
                    if since < now:
                        report.enrolled += _fire(version, since, now)
            except (OperationalError, InterfaceError):
                raise
            except Exception:
                # One journey's failure must not stop the tick's later stages, nor the other
                # journeys: its watermark stays, so its window is looked at again next time.
                log.exception("The date trigger of journey %s failed; it is tried again in the next tick.",
                              journey.pk)
                continue
            looked.append(journey.pk)
        Journey.objects.filter(pk__in=looked).update(date_trigger_checked_until=now)
        return len(journeys)


def local_days_passing(since: datetime, now: datetime, clock: time) -> list[date]:
    """The local days whose `clock` time comes in (since, now] in some zone of the world, in
    order; empty when it comes in none (then no contact's moment at that clock time falls in the
    window, whatever their zone).

    A moment is a local day at `clock` minus its zone's UTC offset, and every zone's offset is a
    whole number of quarter hours from -12:00 to +14:00: so in a minute's window, the clock time
    comes somewhere only when the window crosses a quarter hour of it (four looks an hour), and
    the other looks need not read any contact.
    """
    days = []
    day = since.date() - timedelta(days=1)
    while day <= now.date() + timedelta(days=1):
        local = datetime.combine(day, clock.replace(tzinfo=None), tzinfo=UTC)
        # since < local - utc_offset <= now  <=>  local - now <= utc_offset < local - since
        low = max((local - now).total_seconds(), -MAX_BEHIND_UTC.total_seconds())
        first_offset = -(-low // QUARTER_HOUR.total_seconds()) * QUARTER_HOUR.total_seconds()
        if first_offset < (local - since).total_seconds() and first_offset <= MAX_AHEAD_OF_UTC.total_seconds():
            days.append(day)
        day += timedelta(days=1)
    return days


def _date_journeys():
    return Journey.objects.filter(
        status__in=RUNNING_JOURNEY_STATUSES, live_version__trigger_type=TriggerType.DATE_ATTRIBUTE,
    ).exclude(live_version__trigger_date_attribute="").only("pk", "status", "live_version_id", "date_trigger_checked_until")


def _fire(version: JourneyVersion, since: datetime, now: datetime) -> int:
    """Enroll the contacts whose date's moment fell in (since, now]: three queries (contacts in a
    range of dates, their past enrollments, the insert) and the audit, whatever their number; none
    when the local time comes in no zone in the window (local_days_passing)."""
    if not version.first_step_key:
        return 0
    offset = timedelta(days=version.trigger_date_offset_days)
    # As plain text: a JSON key's own lookups would compare JSON values.
    value = Cast(KeyTextTransform(version.trigger_date_attribute, "attributes"), TextField())
    if connection.vendor == "postgresql":
        # Byte order, whatever the database's collation: ISO dates then sort as dates.
        value = Collate(value, "C")
    try:
        if version.trigger_date_time is None:
            first, last, exact = since.date(), now.date(), None
        else:
            days = local_days_passing(since, now, version.trigger_date_time)
            if not days:
                return 0
            # A plain date's moment comes on its own day (moved by the offset), in whichever zone.
            first, last, exact = days[0], days[-1], [(day - offset).isoformat() for day in days]
        in_band = Q(date_value__gte=(first - ZONE_SPREAD - offset).isoformat(),
                    date_value__lt=(last + ZONE_SPREAD - offset + timedelta(days=1)).isoformat())
    except OverflowError:
        return 0
    contacts = Contact.objects.reachable().annotate(date_value=value)
    if exact is not None:
        # A date and time may fall on another day on the contact's clock than the one it is written with.
        contacts = contacts.annotate(date_length=Length(value))
        in_band = Q(date_value__in=exact) | (in_band & Q(date_length__gt=len("YYYY-MM-DD")))
    contacts = contacts.filter(in_band).only("pk", "timezone", "phone")
    due = []
    for contact in contacts:
        moment = moment_of(contact.date_value, contact_zone(contact), version.trigger_date_offset_days,
                           version.trigger_date_time)
        if moment is not None and since < moment <= now:
            due.append((contact.pk, contact.date_value, moment))
    if not due:
        return 0
    return enroll_many([
        Wanted(version=version, contact_id=contact_id, next_run_at=now,
               trigger=date_trigger_context(version, date_value, moment),
               reason=f"date:{version.trigger_date_attribute}", data={"attribute": version.trigger_date_attribute},
               trigger_key=date_trigger_key(contact_id, date_value))
        for contact_id, date_value, moment in due
    ], now)
