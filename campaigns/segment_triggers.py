"""Segment triggers: enroll contacts when they enter (or leave) a segment a journey triggers on.

One tick stage (campaigns/tick.py). A segment is in use when an active journey's live version
has the trigger "Entering a segment" or "Leaving a segment" on it; it is due when its
refreshed_at is older than its refresh_seconds (or empty). Each due segment is claimed on its
own, in a transaction of its own (SELECT ... FOR UPDATE SKIP LOCKED, then its refreshed_at
re-read under the lock), so two ticks never refresh the same segment twice. Then, set-based:

- entered: INSERT INTO SegmentMembership ... SELECT from the compiled segment query the members
  without a membership, RETURNING their ids;
- left: DELETE the memberships whose contact the compiled query no longer keeps, RETURNING
  their ids;

and those contacts are enrolled in the journeys triggered by entering (or leaving) through
campaigns/admission.py's enroll_many, under each journey's re-entry rules (a contact
already in the journey, or re-entering too soon, is refused and audited).

The first refresh of a segment that succeeds (members_filled_at empty) only fills its
memberships: the contacts already inside when a segment first comes into use did not *enter*
it, so nobody is enrolled.
Everyone who enters from then on is. A segment that stops being used keeps its memberships;
when a journey uses it again, the next refresh enrolls whoever entered meanwhile.

A segment whose definition no longer compiles (an attribute's type was changed under it) is
skipped with an audit entry and tried again at its next refresh.
"""
import datetime as dt

from django.db import connection, transaction
from django.db.models import F

from contacts import segments
from contacts.models import Segment, SegmentMembership
from omni import audit
from omni.lib.claims import claim

from .admission import Wanted, enroll_many
from .models import RUNNING_JOURNEY_STATUSES, SEGMENT_TRIGGERS, JourneyVersion, TriggerType
from .tick_report import TickReport

# Segments refreshed per transaction: one, since one segment's diff may touch many rows.
SEGMENT_BATCH = 1
# Contacts enrolled per enroll_many call, which reads their enrollment history at once.
ENROLL_CHUNK = 1000


def refresh_segments_batch(now, report: TickReport, handled: set | None = None) -> int:
    """Claim one due segment in use by a segment trigger, diff its members against its
    memberships and enroll who entered or left. Returns 1 when it looked at a segment (refreshed
    or found already refreshed by another tick), 0 when none is due."""
    handled = handled if handled is not None else set()
    versions = _live_segment_versions()
    due = [segment_id for segment_id, (refreshed_at, refresh_seconds) in _segments_of(versions).items()
           if segment_id not in handled and _is_due(refreshed_at, refresh_seconds, now)]
    if not due:
        return 0
    with transaction.atomic():
        claimed = claim(Segment.objects.filter(pk__in=due).order_by(F("refreshed_at").asc(nulls_first=True), "pk"), 1)
        if not claimed:
            return 0  # every due segment is being refreshed by another tick
        segment = claimed[0]
        handled.add(segment.pk)
        if not _is_due(segment.refreshed_at, segment.refresh_seconds, now):
            return 1  # another tick refreshed it since we looked
        first = segment.members_filled_at is None
        Segment.objects.filter(pk=segment.pk).update(refreshed_at=now)
        try:
            members = segments.compile(segment.definition, now)
        except segments.InvalidDefinition as error:
            audit.record("segment.refresh_failed", obj=segment, reason="invalid_definition",
                         data={"problems": error.problems})
            return 1
        entered = _insert_members(segment, members, now)
        left = _delete_leavers(segment, members)
        report.segments_refreshed += 1
        if first:
            Segment.objects.filter(pk=segment.pk).update(members_filled_at=now)
        else:
            report.enrolled += _enroll(versions, segment, entered, TriggerType.SEGMENT_ENTRY, now)
            report.enrolled += _enroll(versions, segment, left, TriggerType.SEGMENT_EXIT, now)
        return 1


def _live_segment_versions() -> list[JourneyVersion]:
    return list(
        JourneyVersion.objects.filter(journey__status__in=RUNNING_JOURNEY_STATUSES, journey__live_version=F("pk"),
                                      trigger_type__in=SEGMENT_TRIGGERS, trigger_segment__isnull=False)
        .select_related("journey", "trigger_segment")
    )


def _segments_of(versions) -> dict:
    return {v.trigger_segment_id: (v.trigger_segment.refreshed_at, v.trigger_segment.refresh_seconds)
            for v in versions}


def _is_due(refreshed_at, refresh_seconds, now) -> bool:
    return refreshed_at is None or refreshed_at <= now - dt.timedelta(seconds=refresh_seconds)


def _members_sql(members) -> tuple[str, list]:
    # An alias both databases keep as the derived table's column name.
    sql, params = members.order_by().values(member_id=F("pk")).query.sql_with_params()
    return sql, list(params)


def _insert_members(segment, members, now) -> list[int]:
    """Add the members without a membership; their ids. One INSERT ... SELECT ... RETURNING."""
    table = connection.ops.quote_name(SegmentMembership._meta.db_table)
    members_sql, params = _members_sql(members)
    entered_at = SegmentMembership._meta.get_field("entered_at").get_db_prep_save(now, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (segment_id, contact_id, entered_at) "
            f"SELECT %s, member.member_id, %s FROM ({members_sql}) member "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} m WHERE m.segment_id = %s AND m.contact_id = member.member_id) "
            f"ON CONFLICT DO NOTHING RETURNING contact_id",
            [segment.pk, entered_at, *params, segment.pk],
        )
        return [row[0] for row in cursor.fetchall()]


def _delete_leavers(segment, members) -> list[int]:
    """Remove the memberships of contacts no longer members; their ids. One DELETE ... RETURNING."""
    table = connection.ops.quote_name(SegmentMembership._meta.db_table)
    members_sql, params = _members_sql(members)
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE segment_id = %s "
            f"AND NOT EXISTS (SELECT 1 FROM ({members_sql}) member WHERE member.member_id = {table}.contact_id) "
            f"RETURNING contact_id",
            [segment.pk, *params],
        )
        return [row[0] for row in cursor.fetchall()]


def _enroll(versions, segment, contact_ids, trigger_type, now) -> int:
    triggered = [v for v in versions if v.trigger_segment_id == segment.pk and v.trigger_type == trigger_type
                 and v.first_step_key]
    if not triggered or not contact_ids:
        return 0
    reason = f"{'segment_entry' if trigger_type == TriggerType.SEGMENT_ENTRY else 'segment_exit'}:{segment.pk}"
    enrolled = 0
    for start in range(0, len(contact_ids), ENROLL_CHUNK):
        chunk = contact_ids[start:start + ENROLL_CHUNK]
        enrolled += enroll_many(
            [Wanted(version=v, contact_id=contact_id, next_run_at=now, reason=reason, data={"segment": segment.pk},
                    trigger={"type": trigger_type, "segment": segment.pk, "properties": {}})
             for v in triggered for contact_id in chunk],
            now,
        )
    return enrolled
