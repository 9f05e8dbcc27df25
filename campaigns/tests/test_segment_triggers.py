"""Journeys triggered by entering or leaving a segment: the tick's segment stage."""
import datetime as dt

import pytest
from django.db.models import ProtectedError
from django.urls import reverse

from campaigns import segment_triggers
from campaigns.actions import activate_journey
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStep, ReentryPolicy, StepKind, TriggerType
from campaigns.tick import tick
from campaigns.tick_report import TickReport
from contacts.models import AttributeDefinition, Contact, DataType, Segment, SegmentMembership
from omni.models import AuditEntry
from omni.tests.fakes import run_concurrently

from .conftest import make_journey

T0 = dt.datetime(2026, 3, 15, 12, 0, tzinfo=dt.timezone.utc)
CUSTOMERS = {"match": "all", "filters": [{"kind": "lifecycle_stage", "stages": ["customer"]}]}


@pytest.fixture
def customers_segment(db):
    return Segment.objects.create(name="Customers", definition=CUSTOMERS, refresh_seconds=60)


def _journey(segment, trigger_type=TriggerType.SEGMENT_ENTRY, slug="welcome-customers", **fields):
    journey = make_journey(name=slug, slug=slug, trigger_type=trigger_type, trigger_segment=segment,
                           **fields)
    JourneyStep.objects.create(journey=journey, key="wait", position=1, kind=StepKind.WAIT, config={"seconds": 3600})
    return activate_journey(journey)


def _refresh(now):
    report = TickReport()
    while segment_triggers.refresh_segments_batch(now, report, set()):
        pass
    return report


def _enrolled(journey):
    return set(Enrollment.objects.filter(journey=journey).values_list("contact__external_id", flat=True))


def _stage(external_id, stage):
    Contact.objects.filter(external_id=external_id).update(lifecycle_stage=stage)


@pytest.fixture
def ann_and_bob(db):
    Contact.objects.create(external_id="ann", lifecycle_stage="customer")
    Contact.objects.create(external_id="bob", lifecycle_stage="trial")


def test_the_first_refresh_fills_memberships_and_enrolls_nobody_already_inside(customers_segment, ann_and_bob):
    journey = _journey(customers_segment)

    report = _refresh(T0)

    assert set(SegmentMembership.objects.values_list("contact__external_id", flat=True)) == {"ann"}
    assert _enrolled(journey) == set() and report.enrolled == 0
    customers_segment.refresh_from_db()
    assert customers_segment.refreshed_at == T0


def test_a_first_refresh_that_fails_fills_nothing_and_the_next_one_is_still_the_first(role_groups):
    # given a segment on a number attribute, in use by a journey, with Ann inside from the start
    AttributeDefinition.objects.create(name="score", data_type=DataType.NUMBER)
    segment = Segment.objects.create(name="High", refresh_seconds=60, definition={
        "filters": [{"kind": "attribute", "attribute": "score", "operator": "at_least", "value": 50}]})
    Contact.objects.create(external_id="ann", attributes={"score": 80})
    journey = _journey(segment, slug="high-scorers")

    # when the attribute's type changes under the segment before its first refresh, then changes back
    AttributeDefinition.objects.filter(name="score").update(data_type=DataType.BOOLEAN)
    _refresh(T0)
    AttributeDefinition.objects.filter(name="score").update(data_type=DataType.NUMBER)
    _refresh(T0 + dt.timedelta(minutes=2))

    # then Ann, inside from the start, never entered: the refresh that worked was the first
    assert _enrolled(journey) == set()
    assert SegmentMembership.objects.filter(segment=segment).count() == 1
    # and Bob, who reaches the score later, enters and is enrolled
    Contact.objects.create(external_id="bob", attributes={"score": 90})
    _refresh(T0 + dt.timedelta(minutes=4))
    assert _enrolled(journey) == {"bob"}


def test_a_contact_entering_the_segment_is_enrolled_at_the_next_refresh(customers_segment, ann_and_bob):
    journey = _journey(customers_segment)
    _refresh(T0)
    _stage("bob", "customer")

    # not yet due: refreshed less than refresh_seconds ago
    assert _refresh(T0 + dt.timedelta(seconds=30)).segments_refreshed == 0
    report = _refresh(T0 + dt.timedelta(seconds=60))

    assert report.segments_refreshed == 1 and report.enrolled == 1
    assert _enrolled(journey) == {"bob"}
    enrollment = Enrollment.objects.get(journey=journey)
    assert enrollment.state == EnrollmentState.ACTIVE and enrollment.current_step_key == "wait"
    assert AuditEntry.objects.filter(action="journey.enrolled", reason=f"segment_entry:{customers_segment.pk}").count() == 1


def test_a_contact_leaving_the_segment_is_enrolled_in_a_leaving_journey(customers_segment, ann_and_bob):
    entering = _journey(customers_segment)
    leaving = _journey(customers_segment, TriggerType.SEGMENT_EXIT, slug="win-back")
    _refresh(T0)
    _stage("ann", "churned")

    _refresh(T0 + dt.timedelta(minutes=1))

    assert _enrolled(leaving) == {"ann"} and _enrolled(entering) == set()
    assert not SegmentMembership.objects.exists()


def test_re_entry_rules_apply_to_a_contact_entering_again(customers_segment, ann_and_bob):
    journey = _journey(customers_segment, reentry=ReentryPolicy.NEVER)
    _refresh(T0)
    _stage("bob", "customer")
    _refresh(T0 + dt.timedelta(minutes=1))
    Enrollment.objects.filter(journey=journey).update(state=EnrollmentState.COMPLETED)

    # bob leaves and enters again
    _stage("bob", "trial")
    _refresh(T0 + dt.timedelta(minutes=2))
    _stage("bob", "customer")
    _refresh(T0 + dt.timedelta(minutes=3))

    assert Enrollment.objects.filter(journey=journey).count() == 1
    assert AuditEntry.objects.filter(action="journey.enrollment_refused", reason="reentry_never").count() == 1


def test_re_entry_always_enrolls_again(customers_segment, ann_and_bob):
    journey = _journey(customers_segment, reentry=ReentryPolicy.ALWAYS)
    _refresh(T0)
    for minute, stage in [(1, "customer"), (2, "trial"), (3, "customer")]:
        if minute == 2:
            Enrollment.objects.filter(journey=journey).update(state=EnrollmentState.COMPLETED)
        _stage("bob", stage)
        _refresh(T0 + dt.timedelta(minutes=minute))

    assert Enrollment.objects.filter(journey=journey).count() == 2


def test_a_segment_no_journey_uses_is_not_refreshed(customers_segment, ann_and_bob):
    journey = _journey(customers_segment)
    Journey.objects.filter(pk=journey.pk).update(status="paused")

    assert _refresh(T0).segments_refreshed == 0
    assert not SegmentMembership.objects.exists()


def test_the_diff_is_a_fixed_number_of_queries_whatever_the_number_of_contacts(customers_segment, ann_and_bob,
                                                                              django_assert_max_num_queries):
    _journey(customers_segment)
    _refresh(T0)
    Contact.objects.bulk_create([Contact(external_id=f"c{i}", lifecycle_stage="customer") for i in range(50)])
    _stage("ann", "trial")

    with django_assert_max_num_queries(16):
        report = _refresh(T0 + dt.timedelta(minutes=1))

    assert report.enrolled == 50


def test_the_tick_runs_the_segment_stage(customers_segment, ann_and_bob):
    journey = _journey(customers_segment)
    tick(T0)
    _stage("bob", "customer")

    report = tick(T0 + dt.timedelta(minutes=1))

    assert report.segments_refreshed == 1 and _enrolled(journey) == {"bob"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_refresh_a_segment_once_and_enroll_each_contact_once(role_groups):
    segment = Segment.objects.create(name="Customers", definition=CUSTOMERS)
    journey = _journey(segment)
    Contact.objects.create(external_id="ann", lifecycle_stage="customer")
    _refresh(T0)
    Contact.objects.bulk_create([Contact(external_id=f"c{i}", lifecycle_stage="customer") for i in range(200)])

    reports, errors = run_concurrently(lambda: tick(T0 + dt.timedelta(minutes=1)))

    assert errors == []
    assert sorted(r.segments_refreshed for r in reports) == [0, 1]
    assert Enrollment.objects.filter(journey=journey).count() == 200
    assert AuditEntry.objects.filter(action="journey.enrolled").count() == 200


def test_deleting_a_segment_a_journey_uses_is_refused(customers_segment):
    journey = _journey(customers_segment)

    with pytest.raises(ProtectedError):
        customers_segment.delete()
    journey.refresh_from_db()
    assert journey.trigger_segment == customers_segment


def test_the_admin_names_the_journeys_that_keep_a_segment_from_being_deleted(admin_client, customers_segment):
    _journey(customers_segment, slug="welcome-customers")
    draft = make_journey(name="Draft on customers", slug="draft", trigger_type=TriggerType.SEGMENT_ENTRY,
                         trigger_segment=customers_segment)

    page = admin_client.get(reverse("admin:contacts_segment_delete", args=[customers_segment.pk]))
    admin_client.post(reverse("admin:contacts_segment_delete", args=[customers_segment.pk]), {"post": "yes"})

    html = page.content.decode()
    assert "would require deleting the following protected related objects" in html
    assert "welcome-customers" in html and draft.name in html
    assert Segment.objects.filter(pk=customers_segment.pk).exists()
