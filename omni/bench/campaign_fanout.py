"""A campaign's fan-out at the issue's scale: the segment snapshot, the beat's tick claiming due
recipients, two worker processes sending them.

Seeds, by bulk SQL, `scale` contacts in a segment (lifecycle stage customer), over email, SMS and
WhatsApp as people really are:
- nine in ten have an email address, two in three a phone number (US or India), zones mixed;
- marketing consent: email for four in five (one in twenty-five of them opted out), SMS for
  half, WhatsApp for a quarter: routing walks the plan email, SMS, WhatsApp, and an opt-out
  ends the message there (it never moves to another channel);
- quiet hours for US nights and India nights (deferred, by the clock of the run), a frequency
  cap of two marketing messages a day with one in ten contacts already at it;
- one in fifty already sent the campaign's intent by a journey (duplicate intents: arbitration
  drops the campaign's message there, and duplicate_messages counts any that got through).
Then the campaign starts (campaigns.campaign_start.start_campaign, approved by a second user as
the audience needs): its recipients are the segment's members, all due now.
The beat's tick, `tick(hand_off_recipients_to=hand_off_recipients)`, claims them in batches of
1,000 and hands the ids to `send_campaign_batch_task` on the campaigns queue, where WORKERS real
Celery worker processes (`celery -A omni.bench.worker worker -Q campaigns -P solo`) create the
messages, route and gate them, queue the deliveries (their send tasks are counted, never
consumed) and record each recipient. Timed from the segment query until every recipient is
decided and the campaign has ended.

With the broker "memory://" (the smoke test), the tick sends the batches in this process.
"""
import tempfile
import time
from datetime import timedelta

from celery.signals import before_task_publish
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from . import Figure, find
from .journey_tick import BROKER_URL, _insert_select, _insert_series, _purge, _start_workers, _stop_workers, \
    _timed, _wait_for_workers

DEFINITION = {"match": "all", "filters": [{"kind": "lifecycle_stage", "stages": ["customer"]}]}
INTENT = "spring-sale"


def run(scale: int, *, figures, log) -> list[Figure]:
    results = measure(scale, broker_url=BROKER_URL, log=log)
    ceiling = find(figures, "claim_ceiling", "steps_per_s")
    if ceiling is not None:
        mine = find(results, "campaign_fanout", "contacts_per_s")
        results.append(Figure("campaign_fanout", "ratio_to_claim_ceiling", mine.value / ceiling.value, "ratio", mine.n,
                              notes=f"contacts_per_s: {mine.value:.0f} / {ceiling.value:.0f} steps/s"))
    return results


def seed(scale: int):
    """The contacts, their consents, rules and earlier sends, the template and the campaign (a
    draft). Returns the campaign."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from campaigns import campaign_approval
    from campaigns.models import Campaign
    from channels.models import Message, MessageSource, MessageStatus
    from compliance.models import CapAction, Consent, FrequencyCap, QuietHours, SendLedger
    from contacts.models import Contact, LifecycleStage, Segment
    from templates.actions import publish_template
    from templates.models import Template, TemplateVariant, TemplateVersion

    template = Template.objects.create(key="bench-sale", name="Bench sale", purpose="marketing")
    TemplateVariant.objects.create(template=template, channel="email", subject="Spring sale, {{ first_name }}",
                                   text_body="Hi {{ first_name }}",
                                   html_body='<p>Hi {{ first_name }}</p>'
                                             '<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    for channel in ("sms", "whatsapp"):
        TemplateVariant.objects.create(template=template, channel=channel,
                                       text_body="Hi {{ first_name }}, spring sale. Reply STOP to opt out.")
    publish_template(template)
    version = TemplateVersion.objects.get(template=template)
    LifecycleStage.objects.get_or_create(key="customer", defaults={"name": "Customer"})
    stage, _ = LifecycleStage.objects.get_or_create(key="trial", defaults={"name": "Trial"})

    base = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    _insert_series(Contact, scale, {
        "external_id": "'f' || g",
        "first_name": "'Flo'",
        "email": "CASE WHEN g %% 10 = 9 THEN '' ELSE 'f' || g || '@example.com' END",
        "phone": "CASE g %% 3 WHEN 0 THEN '' WHEN 1 THEN '+1' || (4152000000 + g) ELSE '+91' || (9876500000 + g) END",
        "timezone": "CASE g %% 3 WHEN 1 THEN 'America/Los_Angeles' WHEN 2 THEN 'Asia/Kolkata' ELSE '' END",
        "country": "CASE g %% 3 WHEN 1 THEN 'US' WHEN 2 THEN 'IN' ELSE '' END",
        "lifecycle_stage": "'customer'",
    })
    mine = f"FROM contacts_contact c WHERE c.id > {base}"
    consents = [("email", "CASE WHEN c.id %% 25 = 0 THEN 'revoked' ELSE 'granted' END", "c.id %% 5 <> 1"),
                ("sms", "'granted'", "c.id %% 2 = 0"), ("whatsapp", "'granted'", "c.id %% 4 = 1")]
    for channel, status, where in consents:
        _insert_select(Consent, {"contact_id": "c.id", "channel": f"'{channel}'", "purpose": "'marketing'",
                                 "status": status}, f"{mine} AND {where}")
    QuietHours.objects.bulk_create([
        QuietHours(name="US nights", country="US", start="21:00", end="08:00"),
        QuietHours(name="India nights", country="IN", start="21:00", end="09:00"),
    ])
    FrequencyCap.objects.create(name="Marketing two a day", purpose="marketing", limit=2, window_seconds=86400,
                                action=CapAction.DROP)
    now = timezone.now()
    for hours in (2, 5):
        _insert_select(SendLedger, {"contact_id": "c.id", "channel": "'email'", "purpose": "'marketing'",
                                    "message_id": "c.id", "plan_step": "0", "at": "%s"},
                       f"{mine} AND c.id %% 10 = 3", varying_params={"at": now - timedelta(hours=hours)})
    # The same intent, sent by a journey an hour ago.
    _insert_select(Message, {"contact_id": "c.id", "idempotency_key": "'journey-sale-' || c.id"},
                   f"{mine} AND c.id %% 50 = 7",
                   defaults={"template_version": version, "purpose": "marketing", "intent_key": INTENT,
                             "channel_plan": [{"channel": "email"}], "source": MessageSource.JOURNEY,
                             "status": MessageStatus.SENT, "said_at": now - timedelta(hours=1)})
    segment = Segment.objects.create(name="Bench customers", definition=DEFINITION)
    owner, _ = get_user_model().objects.get_or_create(username="bench-marketer")
    campaign = Campaign.objects.create(
        name="Bench spring sale", template=template, segment=segment, purpose="marketing",
        channel_plan=[{"channel": "email"}, {"channel": "sms"}, {"channel": "whatsapp"}], intent_key=INTENT,
        expires_after=timedelta(days=1), owner=owner, created_by=owner, objective="Measure the fan-out",
        lifecycle_stage=stage, goal_event="purchased", goal_window=timedelta(days=7))
    # Marketing to this many contacts needs a second person's approval, as it would for real.
    approver, _ = get_user_model().objects.get_or_create(username="bench-approver")
    approver.user_permissions.add(Permission.objects.get(codename="approve_campaign",
                                                         content_type__app_label="campaigns"))
    approver = get_user_model().objects.get(pk=approver.pk)  # its permissions read afresh
    campaign_approval.request_approval(campaign, actor=owner)
    campaign_approval.approve(campaign, actor=approver)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return campaign


def start_recipients(campaign, now) -> int:
    """The start, as a marketer's click runs it (campaigns.campaign_start.start_campaign): the
    checks, the segment query, the audience snapshot with its skips, holdout and variants, the
    send times. Returns the audience."""
    from campaigns.campaign_start import start_campaign

    return start_campaign(campaign, actor=campaign.owner, now=now).audience


def measure(scale: int, *, broker_url: str = "memory://", log=lambda line: None) -> list[Figure]:
    """Seed, start the campaign, run the beat's tick and the workers until every recipient is
    decided; return the figures."""
    from campaigns import campaign_sending
    from campaigns.models import CampaignRecipient, CampaignStatus, RecipientOutcome
    from campaigns.tick_report import TickReport
    from channels.models import Delivery, Message, MessageSource
    from compliance.models import Decision
    from omni.celery import app

    campaign = seed(scale)
    log(f"campaign_fanout: seeded {scale} contacts")
    app.conf.broker_url = broker_url
    app.conf.task_always_eager = False
    inline = broker_url.startswith("memory://")
    published = []

    def count(sender=None, **kwargs):
        published.append(sender)

    with tempfile.TemporaryDirectory() as stats_dir:
        workers = [] if inline else _start_workers(stats_dir, broker_url, log, queues="campaigns")
        before_task_publish.connect(count, weak=False)
        try:
            started_wall, started = time.time(), time.perf_counter()
            now = timezone.now()
            start_queries, start_seconds, audience = _timed(lambda: start_recipients(campaign, now))
            tick_queries, tick_seconds, report = _timed(lambda: _tick_until_recipients_drained(inline))
            batches = len([s for s in published if s == "campaigns.tasks.send_campaign_batch_task"])
            if inline:
                stats = [{"tasks": 0, "steps": report.campaign_messages, "queries": 0, "published": 0, "busy_s": 0}]
            else:
                stats = _wait_for_workers(stats_dir, batches, log)
            end_queries, _, _ = _timed(lambda: campaign_sending.finish_campaigns_batch(timezone.now(), TickReport()))
            seconds = time.perf_counter() - started if inline else time.time() - started_wall
        finally:
            before_task_publish.disconnect(count)
            _stop_workers(workers)
            if not inline:
                _purge(broker_url)

    campaign.refresh_from_db()
    made = sum(s["steps"] for s in stats)
    queries = start_queries + tick_queries + end_queries + sum(s["queries"] for s in stats)
    messages = len(published) + sum(s["published"] for s in stats)
    sent = Message.objects.filter(source=MessageSource.CAMPAIGN)
    # Twice to one contact: two campaign messages, or the campaign's intent said twice, whatever
    # sent it (the seeded journey sends carry it: arbitration must drop the campaign's there).
    duplicates = sent.values("contact_id").order_by().annotate(n=Count("id")).filter(n__gt=1).count() + (
        Message.objects.filter(intent_key=INTENT, said_at__isnull=False).values("contact_id").order_by()
        .annotate(n=Count("id")).filter(n__gt=1).count())
    outcomes = dict(CampaignRecipient.objects.values_list("outcome").annotate(n=Count("id")).order_by())
    statuses = dict(sent.values_list("status").annotate(n=Count("id")).order_by())
    deliveries = Delivery.objects.filter(message__source=MessageSource.CAMPAIGN)
    channels = dict(deliveries.values_list("channel").annotate(n=Count("id")).order_by())
    ruled = dict(Decision.objects.filter(message_id__in=sent.values("pk")).values_list("channel")
                 .annotate(n=Count("id")).order_by())
    undecided = outcomes.get(RecipientOutcome.PENDING, 0)
    busy = "; ".join(f"worker {i + 1}: {s['tasks']} tasks, {s['steps']} messages, busy {s['busy_s']:.2f}s"
                     for i, s in enumerate(stats))
    mode = "in this process (smoke)" if inline else f"{len(workers)} celery workers -P solo, broker {broker_url}"
    notes = (f"{scale} contacts, audience {audience} (snapshot {start_seconds:.2f}s); tick claimed "
             f"{report.handed_off or report.campaign_messages} in {tick_seconds:.2f}s, {batches} batches; {mode}; "
             f"{busy}; {seconds:.2f}s; messages {statuses}; deliveries {channels}; gate decisions {ruled}; campaign {campaign.status}")
    assert campaign.status == CampaignStatus.SENT or undecided, "every recipient decided, yet the campaign did not end"
    return [
        Figure("campaign_fanout", "contacts_per_s", audience / seconds, "contacts/s", audience, notes=notes),
        Figure("campaign_fanout", "celery_messages_per_1000_contacts", 1000 * messages / max(audience, 1), "messages",
               audience, notes=f"{messages} published: {batches} fan-out batches, the rest send tasks"),
        Figure("campaign_fanout", "queries_per_1000_contacts", 1000 * queries / max(audience, 1), "queries", audience),
        Figure("campaign_fanout", "duplicate_messages", duplicates, "contacts", made,
               notes="contacts sent two of the campaign's messages, or its intent twice by any source"),
        Figure("campaign_fanout", "recipients_undecided", undecided, "recipients", audience,
               notes=f"recipients by outcome {outcomes}"),
    ]


def _tick_until_recipients_drained(inline: bool):
    """The beat's tick, again while its campaign recipients stage stops at its budget with work left."""
    from campaigns.tasks import hand_off_recipients
    from campaigns.tick import tick

    hand_off = None if inline else hand_off_recipients
    report = tick(hand_off_recipients_to=hand_off)
    while "campaign recipients" in report.backlogged:
        more = tick(hand_off_recipients_to=hand_off)
        more.handed_off += report.handed_off
        more.campaign_messages += report.campaign_messages
        report = more
    return report
