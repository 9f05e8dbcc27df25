"""Starting a campaign: the checks, the pinned versions, the audience snapshot with who was left
out and why, the holdout and variants drawn, the send times (local time across zones and DST,
past its time, the throttle), the A/B test's waiting rest, and a query count that does not grow
with the audience."""
import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from campaigns.campaign_start import CampaignNotReady, clone_campaign, draws, start_campaign
from campaigns.models import (
    Campaign,
    CampaignRecipient,
    CampaignStatus,
    CampaignVariant,
    LocalTimePassed,
    RecipientOutcome,
)
from compliance import gate
from compliance.actions import record_consent_change, suppress
from contacts.models import Contact, Segment
from omni.models import AuditEntry
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

from .conftest import make_contact, ready_fields

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def everyone(db):
    return Segment.objects.create(name="Everyone", definition={})


def make_campaign(template, segment, **fields) -> Campaign:
    """A campaign the start accepts: owner, objective, stage, goal event and window, a segment, email."""
    journey_fields = ready_fields()
    values = {"name": "Summer sale", "template": template, "segment": segment,
              "owner": journey_fields["owner"], "objective": "Sell the summer range",
              "lifecycle_stage": journey_fields["lifecycle_stage"], "goal_event": "purchased",
              "goal_window": timedelta(days=3), "channel_plan": [{"channel": "email"}], **fields}
    return Campaign.objects.create(**values)


def contacts(count: int, prefix="c", **extra) -> list[Contact]:
    return [make_contact(f"{prefix}{n}", email=f"{prefix}{n}@example.com", consents=(("email", "marketing"),),
                         **extra) for n in range(count)]


def bulk_contacts(count: int, prefix="b", **extra) -> list[Contact]:
    """Many emailable contacts at once (consent does not matter for who is left out)."""
    return Contact.objects.bulk_create([Contact(external_id=f"{prefix}{n}", email=f"{prefix}{n}@example.com", **extra)
                                        for n in range(count)])


def recipients(campaign) -> list[CampaignRecipient]:
    return list(campaign.recipients.select_related("contact", "variant").order_by("contact_id"))


# --- the checks ------------------------------------------------------------------------------------

def test_start_is_refused_naming_each_missing_field_and_nothing_is_written(welcome_templates):
    campaign = Campaign.objects.create(name="Bare", template=welcome_templates[0])

    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(campaign, actor=None, now=NOW)

    text = " ".join(refused.value.problems)
    for words in ("owner", "objective", "lifecycle stage", "goal event", "goal window", "segment"):
        assert words in text
    assert len(refused.value.problems) == 6
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT
    assert not CampaignRecipient.objects.exists()
    assert not CampaignVariant.objects.exists()


def test_start_is_refused_for_a_zero_weight_an_unpublished_template_and_a_template_without_a_plan_channel(
        welcome_templates, everyone):
    email, sms = welcome_templates
    draft = Template.objects.create(key="draft", name="Never published", purpose="marketing")
    campaign = make_campaign(email, everyone)
    CampaignVariant.objects.create(campaign=campaign, name="A", template=email, weight=0)
    CampaignVariant.objects.create(campaign=campaign, name="B", template=draft, weight=50)
    CampaignVariant.objects.create(campaign=campaign, name="C", template=sms, weight=50)

    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(campaign, actor=None, now=NOW)

    problems = refused.value.problems
    assert any("'A' has a weight of 0" in p for p in problems)
    assert any("'Never published' has no published version" in p for p in problems)
    assert any("'Welcome SMS' (version 1) has no variant for any of the campaign's channels (email)" in p
               for p in problems)


def test_a_campaign_already_started_cannot_start_again(welcome_templates, everyone):
    contacts(2)
    campaign = make_campaign(welcome_templates[0], everyone)
    start_campaign(campaign, actor=None, now=NOW)

    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(campaign, actor=None, now=NOW)

    assert refused.value.problems == ["It is sending: only a draft campaign can start."]
    assert CampaignRecipient.objects.count() == 2


# --- the snapshot ----------------------------------------------------------------------------------

def test_start_pins_the_version_snapshots_the_audience_and_is_audited(welcome_templates, everyone, django_user_model):
    marketer = django_user_model.objects.create_user("mara")
    email = welcome_templates[0]
    people = contacts(3)
    campaign = make_campaign(email, everyone)

    summary = start_campaign(campaign, actor=marketer, now=NOW)

    main = CampaignVariant.objects.get(campaign=campaign)
    assert (main.name, main.weight, main.template_version.number) == ("Main", 100, 1)
    assert [(r.contact_id, r.outcome, r.variant_id, r.send_at, r.in_test) for r in recipients(campaign)] == [
        (c.pk, RecipientOutcome.PENDING, main.pk, NOW, False) for c in people]
    assert (summary.audience, summary.pending, summary.holdout, summary.skipped) == (3, 3, 0, {})
    campaign.refresh_from_db()
    assert (campaign.status, campaign.started_at, campaign.test_ends_at) == (CampaignStatus.SENDING, NOW, None)
    entry = AuditEntry.objects.get(action="campaign.started")
    assert (entry.object_id, entry.actor_id) == (str(campaign.pk), marketer.pk)
    assert entry.data["audience"] == 3 and entry.data["pending"] == 3
    assert entry.data["pinned_versions"] == {"Main": main.template_version_id}
    assert (entry.data["from"], entry.data["to"]) == ("draft", "sending")

    publish_template(email)  # a later version does not move what the campaign pinned
    main.refresh_from_db()
    assert main.template_version.number == 1


def test_those_left_out_are_recorded_with_their_reason(welcome_templates, everyone):
    ok, erased, paused, no_address, opted_out, phone_only = (
        make_contact("ok", email="ok@example.com"),
        make_contact("erased", email="erased@example.com"),
        make_contact("paused", email="paused@example.com", messaging_paused=True),
        make_contact("nowhere"),
        make_contact("stopped", email="stopped@example.com"),
        make_contact("phone", phone="+14155550101"),
    )
    Contact.objects.filter(pk=erased.pk).update(erased_at=NOW - timedelta(days=1), email="")
    record_consent_change(opted_out, "email", "marketing", "revoked", "form", evidence={"form": "prefs"},
                          announce=False)
    campaign = make_campaign(welcome_templates[0], everyone)

    summary = start_campaign(campaign, actor=None, now=NOW)

    by_contact = {r.contact_id: (r.outcome, r.skip_reason) for r in recipients(campaign)}
    assert by_contact == {
        ok.pk: (RecipientOutcome.PENDING, ""),
        erased.pk: (RecipientOutcome.SKIPPED, "erased"),
        paused.pk: (RecipientOutcome.SKIPPED, "paused"),
        no_address.pk: (RecipientOutcome.SKIPPED, "no_address"),
        opted_out.pk: (RecipientOutcome.SKIPPED, "opted_out"),
        phone_only.pk: (RecipientOutcome.SKIPPED, "no_address"),  # the plan is email only
    }
    assert summary.skipped == {"erased": 1, "paused": 1, "no_address": 2, "opted_out": 1}
    skipped = CampaignRecipient.objects.filter(outcome=RecipientOutcome.SKIPPED)
    assert all(r.send_at is None and r.variant_id is None and r.decided_at == NOW for r in skipped)


def test_an_unsubscribed_or_stopped_address_is_an_opt_out_and_a_bounced_one_is_not(welcome_templates, everyone):
    unsubscribed = make_contact("unsubscribed", email="unsub@example.com")
    stopped = make_contact("stopped", phone="+14155550103")
    bounced = make_contact("bounced", email="bounced@example.com")
    suppress("unsub@example.com", channel="email", reason="unsubscribe", contact=unsubscribed)
    suppress("+14155550103", reason="stop", contact=stopped)
    suppress("bounced@example.com", reason="hard_bounce", contact=bounced)
    campaign = make_campaign(welcome_templates[0], everyone, channel_plan=[{"channel": "email"}, {"channel": "sms"}])

    start_campaign(campaign, actor=None, now=NOW)

    assert {r.contact_id: (r.outcome, r.skip_reason) for r in recipients(campaign)} == {
        unsubscribed.pk: (RecipientOutcome.SKIPPED, "opted_out"),
        stopped.pk: (RecipientOutcome.SKIPPED, "opted_out"),
        bounced.pk: (RecipientOutcome.PENDING, ""),  # the gate stops it at the send; it did not opt out
    }


def test_a_contact_opted_out_of_one_plan_channel_but_not_the_other_stays_in(welcome_templates, everyone):
    both = make_contact("both", email="both@example.com", phone="+14155550102")
    record_consent_change(both, "email", "marketing", "revoked", "form", evidence={"form": "prefs"}, announce=False)
    campaign = make_campaign(welcome_templates[0], everyone, channel_plan=[{"channel": "email"}, {"channel": "sms"}])

    start_campaign(campaign, actor=None, now=NOW)

    assert [(r.outcome, r.skip_reason) for r in recipients(campaign)] == [(RecipientOutcome.PENDING, "")]


def test_a_contact_opted_out_of_each_plan_channel_in_a_different_way_is_left_out(welcome_templates, everyone):
    # given: email consent revoked and the phone stopped; beside them, a revoked email and a
    # bounced phone (the gate decides: a bounce is no opt-out)
    stopped_too = make_contact("stopped-too", email="st@example.com", phone="+14155550104")
    bounced_phone = make_contact("bounced-phone", email="bp@example.com", phone="+14155550105")
    for contact in (stopped_too, bounced_phone):
        record_consent_change(contact, "email", "marketing", "revoked", "form", evidence={"form": "prefs"},
                              announce=False)
    suppress("+14155550104", reason="stop", contact=stopped_too)
    suppress("+14155550105", reason="hard_bounce", contact=bounced_phone)
    campaign = make_campaign(welcome_templates[0], everyone, channel_plan=[{"channel": "email"}, {"channel": "sms"}])

    start_campaign(campaign, actor=None, now=NOW)

    assert {r.contact_id: (r.outcome, r.skip_reason) for r in recipients(campaign)} == {
        stopped_too.pk: (RecipientOutcome.SKIPPED, "opted_out"),
        bounced_phone.pk: (RecipientOutcome.PENDING, ""),
    }


def test_a_suppression_of_an_address_written_differently_still_counts(welcome_templates, everyone):
    unsubscribed = make_contact("unsubscribed", email="Unsub@Example.com")
    suppress("unsub@example.com", channel="email", reason="unsubscribe", contact=unsubscribed)
    campaign = make_campaign(welcome_templates[0], everyone)

    start_campaign(campaign, actor=None, now=NOW)

    assert [(r.outcome, r.skip_reason) for r in recipients(campaign)] == [(RecipientOutcome.SKIPPED, "opted_out")]


# --- holdout and variants ------------------------------------------------------------------------

def test_the_holdout_is_recorded_and_drawn_the_same_on_every_run(welcome_templates, everyone):
    people = bulk_contacts(300)
    campaign = make_campaign(welcome_templates[0], everyone, holdout_percent=20)

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        start_campaign(campaign, actor=None, now=NOW)
        first_run = set(campaign.recipients.filter(outcome="holdout").values_list("contact_id", flat=True))
        raise RolledBack
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT and not campaign.recipients.exists()

    summary = start_campaign(campaign, actor=None, now=NOW)

    held = set(campaign.recipients.filter(outcome="holdout").values_list("contact_id", flat=True))
    assert held == first_run
    assert held == {c.pk for c in people if draws(campaign.pk, c.pk)[0] < 0.2}
    assert 30 <= len(held) <= 90 and summary.holdout == len(held)
    rows = campaign.recipients.filter(outcome="holdout")
    assert all(r.variant_id is None and r.send_at is None and r.decided_at == NOW for r in rows)


def test_variants_are_split_by_weight(welcome_templates, everyone):
    email, _ = welcome_templates
    other = Template.objects.create(key="other", name="Other email", purpose="marketing")
    TemplateVariant.objects.create(template=other, channel="email", subject="Hello",
                                   text_body="Hi. Unsubscribe: {{ unsubscribe_url }}")
    publish_template(other)
    bulk_contacts(400)
    campaign = make_campaign(email, everyone)
    a = CampaignVariant.objects.create(campaign=campaign, name="A", template=email, weight=75, position=1)
    b = CampaignVariant.objects.create(campaign=campaign, name="B", template=other, weight=25, position=2)

    start_campaign(campaign, actor=None, now=NOW)

    split = Counter(campaign.recipients.values_list("variant_id", flat=True))
    assert set(split) == {a.pk, b.pk}
    assert 250 <= split[a.pk] <= 350 and split[a.pk] + split[b.pk] == 400
    assert not campaign.recipients.filter(in_test=False).exists()  # all in the test: there is no rest
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.template_version.template_id, b.template_version.template_id) == (email.pk, other.pk)
    campaign.refresh_from_db()
    assert campaign.test_ends_at is None


def test_the_test_share_is_split_and_the_rest_waits_with_no_send_time(welcome_templates, everyone):
    email, _ = welcome_templates
    bulk_contacts(300)
    campaign = make_campaign(email, everyone, test_percent=20, test_period=timedelta(hours=4),
                             throttle_per_minute=20)
    CampaignVariant.objects.create(campaign=campaign, name="A", template=email, weight=50, position=1)
    CampaignVariant.objects.create(campaign=campaign, name="B", template=email, weight=50, position=2)

    summary = start_campaign(campaign, actor=None, now=NOW)

    tested = list(campaign.recipients.filter(in_test=True))
    rest = list(campaign.recipients.filter(in_test=False))
    assert 30 <= len(tested) <= 90 and len(tested) + len(rest) == 300
    assert all(r.variant_id and r.send_at and r.outcome == "pending" for r in tested)
    assert all(r.variant_id is None and r.send_at is None and r.outcome == "pending" for r in rest)
    assert (summary.pending, summary.waiting_for_winner) == (len(tested), len(rest))
    campaign.refresh_from_db()
    last = max(r.send_at for r in tested)
    assert last == NOW + timedelta(minutes=(len(tested) - 1) // 20)
    assert campaign.test_ends_at == last + timedelta(hours=4)


def test_a_test_share_without_a_test_period_is_refused(welcome_templates, everyone):
    email, _ = welcome_templates
    campaign = make_campaign(email, everyone, test_percent=20)
    CampaignVariant.objects.create(campaign=campaign, name="A", template=email, weight=50, position=1)
    CampaignVariant.objects.create(campaign=campaign, name="B", template=email, weight=50, position=2)

    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(campaign, actor=None, now=NOW)

    assert refused.value.problems == ["Set its test period: how long the A/B test runs on 20% of the audience "
                                      "before the rest get the winner."]


def test_an_ab_test_on_opens_over_channels_that_report_none_is_refused(welcome_templates, everyone):
    email, sms = welcome_templates
    campaign = make_campaign(sms, everyone, test_metric="opens", channel_plan=[{"channel": "sms"}])
    CampaignVariant.objects.create(campaign=campaign, name="A", template=sms, weight=50, position=1)
    CampaignVariant.objects.create(campaign=campaign, name="B", template=sms, weight=50, position=2)

    with pytest.raises(CampaignNotReady) as refused:
        start_campaign(campaign, actor=None, now=NOW)

    assert refused.value.problems == ["Its A/B test counts opens, which none of its channels (sms) reports: count "
                                      "clicks, replies or the goal event instead."]


# --- send times ------------------------------------------------------------------------------------

def test_the_throttle_spreads_send_times_minute_by_minute(welcome_templates, everyone):
    people = bulk_contacts(25)
    campaign = make_campaign(welcome_templates[0], everyone, throttle_per_minute=10)

    start_campaign(campaign, actor=None, now=NOW)

    times = [r.send_at for r in recipients(campaign)]
    assert times == [NOW] * 10 + [NOW + timedelta(minutes=1)] * 10 + [NOW + timedelta(minutes=2)] * 5
    assert [r.contact_id for r in recipients(campaign)] == [c.pk for c in people]


def test_a_future_schedule_is_scheduled(welcome_templates, everyone):
    bulk_contacts(2)
    later = NOW + timedelta(days=2)
    campaign = make_campaign(welcome_templates[0], everyone, scheduled_at=later)

    start_campaign(campaign, actor=None, now=NOW)

    assert {r.send_at for r in recipients(campaign)} == {later}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SCHEDULED


def zoned(campaign_fields, everyone, template, now, zones=("America/New_York", "Asia/Tokyo", "Europe/London")):
    people = {zone: make_contact(zone.split("/")[1].lower(), email=f"{zone.split('/')[1].lower()}@example.com",
                                 timezone=zone) for zone in zones}
    campaign = make_campaign(template, everyone, send_in_local_time=True, **campaign_fields)
    start_campaign(campaign, actor=None, now=now)
    rows = {r.contact_id: r for r in recipients(campaign)}
    campaign.refresh_from_db()
    return campaign, {zone: rows[contact.pk] for zone, contact in people.items()}


def test_local_time_sends_at_the_wall_clock_in_each_contacts_zone(welcome_templates, everyone, settings):
    settings.TIME_ZONE = "UTC"  # the zone the marketer entered 09:00 in
    campaign, rows = zoned({"scheduled_at": datetime(2026, 6, 15, 9, 0, tzinfo=UTC)}, everyone,
                           welcome_templates[0], NOW)

    assert {zone: row.send_at for zone, row in rows.items()} == {
        "America/New_York": datetime(2026, 6, 15, 13, 0, tzinfo=UTC),  # EDT, UTC-4
        "Asia/Tokyo": datetime(2026, 6, 15, 0, 0, tzinfo=UTC),  # UTC+9
        "Europe/London": datetime(2026, 6, 15, 8, 0, tzinfo=UTC),  # BST, UTC+1
    }
    assert campaign.status == CampaignStatus.SCHEDULED


def test_local_time_on_a_spring_forward_day_sends_as_much_later_as_the_clocks_skip(
        welcome_templates, everyone, settings):
    settings.TIME_ZONE = "UTC"
    # 02:30 does not exist in New York on 2026-03-08 (02:00 EST -> 03:00 EDT): sent at 03:30 EDT.
    _, rows = zoned({"scheduled_at": datetime(2026, 3, 8, 2, 30, tzinfo=UTC)}, everyone, welcome_templates[0],
                    datetime(2026, 3, 1, tzinfo=UTC), zones=("America/New_York", "Europe/London"))

    assert rows["America/New_York"].send_at == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert rows["Europe/London"].send_at == datetime(2026, 3, 8, 2, 30, tzinfo=UTC)  # GMT that day


def test_local_time_on_a_fall_back_day_sends_the_first_time_the_clocks_show_it(
        welcome_templates, everyone, settings):
    settings.TIME_ZONE = "UTC"
    # 01:30 happens twice in New York on 2026-11-01 (EDT, then EST): sent at the first, 01:30 EDT.
    _, rows = zoned({"scheduled_at": datetime(2026, 11, 1, 1, 30, tzinfo=UTC)}, everyone, welcome_templates[0],
                    datetime(2026, 10, 25, tzinfo=UTC), zones=("America/New_York",))

    assert rows["America/New_York"].send_at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_local_time_already_passed_sends_at_once_when_the_marketer_chose_so(welcome_templates, everyone, settings):
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)  # past 09:00 in Tokyo and London, not in New York
    campaign, rows = zoned({"scheduled_at": datetime(2026, 6, 15, 9, 0, tzinfo=UTC),
                            "local_time_passed": LocalTimePassed.SEND_NOW}, everyone, welcome_templates[0], now)

    assert {zone: (row.outcome, row.send_at) for zone, row in rows.items()} == {
        "America/New_York": ("pending", datetime(2026, 6, 15, 13, 0, tzinfo=UTC)),
        "Asia/Tokyo": ("pending", now),
        "Europe/London": ("pending", now),
    }
    assert campaign.status == CampaignStatus.SENDING


def test_local_time_already_passed_leaves_the_contact_out_when_the_marketer_chose_so(
        welcome_templates, everyone, settings):
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
    campaign, rows = zoned({"scheduled_at": datetime(2026, 6, 15, 9, 0, tzinfo=UTC),
                            "local_time_passed": LocalTimePassed.SKIP}, everyone, welcome_templates[0], now)

    assert {zone: (row.outcome, row.skip_reason, row.send_at) for zone, row in rows.items()} == {
        "America/New_York": ("pending", "", datetime(2026, 6, 15, 13, 0, tzinfo=UTC)),
        "Asia/Tokyo": ("skipped", "local_time_passed", None),
        "Europe/London": ("skipped", "local_time_passed", None),
    }
    assert campaign.status == CampaignStatus.SCHEDULED


# --- cost ------------------------------------------------------------------------------------------

def test_the_start_takes_as_many_queries_for_200_contacts_as_for_10(welcome_templates):
    first = Segment.objects.create(name="Small", definition={"filters": [
        {"kind": "attribute", "attribute": "batch", "operator": "equals", "value": "small"}]})
    second = Segment.objects.create(name="Large", definition={"filters": [
        {"kind": "attribute", "attribute": "batch", "operator": "equals", "value": "large"}]})
    Contact.objects.bulk_create([Contact(external_id=f"s{n}", email=f"s{n}@example.com",
                                         attributes={"batch": "small"}) for n in range(10)])
    Contact.objects.bulk_create([Contact(external_id=f"l{n}", email=f"l{n}@example.com",
                                         attributes={"batch": "large"}) for n in range(200)])
    gate.current_rules()  # the sending rules, cached per process, are loaded before counting
    counts = []
    for segment, size in ((first, 10), (second, 200)):
        campaign = make_campaign(welcome_templates[0], segment, name=segment.name, holdout_percent=10,
                                 channel_plan=[{"channel": "email"}, {"channel": "sms"}])
        with CaptureQueriesContext(connection) as queries:
            start_campaign(campaign, actor=None, now=NOW)
        assert campaign.recipients.count() == size
        counts.append(len(queries))

    # SQLite takes a query's parameters only up to a limit, so its inserts come in batches;
    # PostgreSQL writes them with one COPY.
    fields = [f for f in CampaignRecipient._meta.concrete_fields if not f.primary_key]
    batch = connection.ops.bulk_batch_size(fields, [None] * 200)
    extra_inserts = 0 if connection.vendor == "postgresql" else math.ceil(200 / batch) - 1
    assert counts[1] == counts[0] + extra_inserts
    assert counts[0] <= 19, counts


# --- clone -----------------------------------------------------------------------------------------

def test_a_clone_copies_settings_and_variants_but_not_pins_status_approval_or_recipients(
        welcome_templates, everyone, django_user_model):
    marketer = django_user_model.objects.create_user("mara")
    email, _ = welcome_templates
    bulk_contacts(3)
    campaign = make_campaign(email, everyone, holdout_percent=10, test_percent=50, test_period=timedelta(hours=2),
                             throttle_per_minute=100)
    CampaignVariant.objects.create(campaign=campaign, name="A", template=email, weight=60, position=1)
    CampaignVariant.objects.create(campaign=campaign, name="B", template=email, weight=40, position=2)
    start_campaign(campaign, actor=marketer, now=NOW)

    clone = clone_campaign(campaign, actor=marketer)

    assert clone.name == "Copy of Summer sale"
    assert (clone.status, clone.started_at, clone.test_ends_at, clone.approved_at) == ("draft", None, None, None)
    for name in ("template_id", "segment_id", "channel_plan", "holdout_percent", "test_percent", "test_period",
                 "throttle_per_minute", "owner_id", "objective", "lifecycle_stage_id", "goal_event", "goal_window"):
        assert getattr(clone, name) == getattr(campaign, name), name
    assert list(clone.variants.values_list("name", "template_id", "weight", "template_version")) == [
        ("A", email.pk, 60, None), ("B", email.pk, 40, None)]
    assert not clone.recipients.exists()
    entry = AuditEntry.objects.get(action="campaign.cloned")
    assert (entry.object_id, entry.data["from"], entry.actor_id) == (str(clone.pk), campaign.pk, marketer.pk)

    start_campaign(clone, actor=marketer, now=NOW)  # and it starts as its original did
    assert clone.recipients.count() == 3
