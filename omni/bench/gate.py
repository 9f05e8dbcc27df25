"""The gate with every rule on: one decide_many over `scale` sends, and single checks.

Seeds `scale` contacts by bulk SQL: a quarter with a profile zone in India (UTC+05:30), a
quarter with only a US phone number (zones from phonenumbers; some in two zones), a quarter in
New York (a tenth of them in Florida), a quarter with neither (the default zone); a fifth are
trials. Each has marketing consent on SMS and email, two rows in the send ledger (one in the
last day, one 30 hours ago), and one in twenty a suppressed address. The rules: quiet hours
for the US, Florida, India and everyone's email (four rows), frequency caps per channel, per
purpose, for trials and over a week (four rows), and a paused provider the sends do not use.

Figures: `us_per_message` (decide_many over the whole batch, facts loaded and decided, the
rules cache cold, as after a rule change), `queries_per_batch` (that batch), `check_p99_ms`
(gate.check for one send, 1,000 of them, warm).
"""
import random
import statistics
import time
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from . import Figure

CHECKS = 1000


def seed(scale: int, now):
    """The contacts, their consents, suppressions and ledger, and the rules. Returns the contacts."""
    from compliance import gate
    from compliance.models import hash_address
    from compliance.models import (
        CapAction,
        Consent,
        FrequencyCap,
        QuietHours,
        SendingPause,
        SendLedger,
        Suppression,
    )
    from contacts.models import Contact
    from omni.lib.bulk import insert_rows

    from .journey_tick import _insert_select, _insert_series

    base = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    _insert_series(Contact, scale, {
        "external_id": "'g' || g",
        "email": "'g' || g || '@example.com'",
        "phone": "CASE g %% 4 WHEN 0 THEN '+91' || (9876500000 + g) WHEN 1 THEN '+1' || "
                 "(CASE WHEN g %% 3 = 0 THEN 2082000000 ELSE 4152000000 END + g) "
                 "WHEN 2 THEN '+1' || (2122000000 + g) ELSE '' END",
        "timezone": "CASE g %% 4 WHEN 0 THEN 'Asia/Kolkata' WHEN 2 THEN 'America/New_York' ELSE '' END",
        "country": "CASE g %% 4 WHEN 0 THEN 'IN' WHEN 3 THEN '' ELSE 'US' END",
        "region": "CASE WHEN g %% 40 = 2 THEN 'US-FL' ELSE '' END",
        "lifecycle_stage": "CASE WHEN g %% 5 = 0 THEN 'trial' ELSE 'customer' END",
    })
    for channel in ("sms", "email"):
        _insert_select(Consent, {"contact_id": "c.id", "channel": f"'{channel}'", "purpose": "'marketing'",
                                 "status": "'granted'"}, f"FROM contacts_contact c WHERE c.id > {base}")
    contacts = list(Contact.objects.filter(pk__gt=base).order_by("pk"))
    Suppression.objects.bulk_create([
        Suppression(address=c.phone or c.email, address_hash=hash_address(c.phone or c.email), reason="complaint")
        for c in contacts[::20]])
    rows = []
    for index, contact in enumerate(contacts):
        for hours in (index % 20 + 0.5, 30):
            rows.append((contact.pk, "sms" if contact.phone else "email", "marketing", index, 0,
                         now - timedelta(hours=hours)))
    insert_rows(SendLedger, ["contact_id", "channel", "purpose", "message_id", "plan_step", "at"], rows)
    QuietHours.objects.bulk_create([
        QuietHours(name="US nights", country="US", start="21:00", end="08:00"),
        QuietHours(name="Florida", region="US-FL", start="20:00", end="09:00"),
        QuietHours(name="India", country="IN", start="21:00", end="09:00"),
        QuietHours(name="Email at night", channel="email", start="23:00", end="06:00"),
    ])
    FrequencyCap.objects.bulk_create([
        FrequencyCap(name="SMS three a day", channel="sms", limit=3, window_seconds=86400),
        FrequencyCap(name="Marketing two a day", purpose="marketing", limit=2, window_seconds=86400,
                     action=CapAction.DEFER),
        FrequencyCap(name="Trials one a day", limit=1, window_seconds=86400, lifecycle_stages=["trial"]),
        FrequencyCap(name="Ten a week", limit=10, window_seconds=7 * 86400, action=CapAction.DEFER),
    ])
    SendingPause.objects.create(channel="sms", provider="elsewhere", reason="bench: a pause no send is on")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    gate.current_rules()
    return contacts


def requests_for(contacts):
    from compliance.gate import SendRequest

    return [SendRequest(c, "sms" if c.phone else "email", "marketing", c.phone or c.email, "sandbox")
            for c in contacts]


def measure(scale: int, log=lambda line: None) -> list[Figure]:
    from compliance import gate
    from contacts import phones

    now = timezone.now()
    contacts = seed(scale, now)
    requests = requests_for(contacts)
    log(f"gate: seeded {len(contacts)} contacts, 8 rules")

    # Cold: rules reloaded, phone zones not yet looked up, as after a rule change or a restart.
    gate._rule_cache.key = None
    phones.timezones_of.cache_clear()
    phones.country_of.cache_clear()
    started = time.perf_counter()
    verdicts = gate.decide_many(requests, now)
    seconds = time.perf_counter() - started
    gate._rule_cache.key = None
    with CaptureQueriesContext(connection) as captured:
        gate.decide_many(requests, now)
    outcomes = {}
    for verdict in verdicts:
        outcomes[verdict.reason] = outcomes.get(verdict.reason, 0) + 1

    sample = random.Random(16).sample(contacts, min(CHECKS, len(contacts)))
    timings = []
    for contact in sample:
        one = time.perf_counter()
        gate.check(contact, "sms" if contact.phone else "email", "marketing", contact.phone or contact.email,
                   provider="sandbox", now=now)
        timings.append((time.perf_counter() - one) * 1000)
    p99 = statistics.quantiles(timings, n=100)[98] if len(timings) > 1 else timings[0]

    notes = ", ".join(f"{reason} {count}" for reason, count in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    return [
        Figure("gate", "us_per_message", seconds / len(requests) * 1e6, "us", len(requests),
               notes=f"decide_many, every rule on, cold rules and phone-zone caches; {seconds:.2f}s; {notes}"),
        Figure("gate", "queries_per_batch", len(captured), "queries", len(requests),
               notes="version of rules and pauses, the three reloaded, consents + suppressions + ledger in one UNION ALL"),
        Figure("gate", "check_p99_ms", p99, "ms", len(timings),
               notes=f"gate.check, one send each; median {statistics.median(timings):.2f} ms"),
    ]


def run(scale: int, *, figures, log) -> list[Figure]:
    return measure(scale, log=log)
