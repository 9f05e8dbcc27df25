"""The contact timeline on a full table: the first page and the 50th of one busy contact.

Seeds `scale` contacts with 20 messages and deliveries each by SQL (1,000,000 deliveries at
50,000), then one contact with PER_KIND entries of every kind (events, consent changes,
enrollments that each ended, one step visit each, decisions, messages with a delivery and a
provider event each, replies), three entries of each kind at each instant so pages cut through
equal times. At a small scale the busy contact has fewer entries (enough for 50 pages).

Figures: `first_page_ms` and `page_50_ms`, the whole page as a superuser gets it (the view,
its template, the side panel; the median of a few requests), and `queries_per_page`; on the same
data, `home_ms`: each role's home (/admin/) as a member of its group gets it, the slowest role.
"""
import statistics
import time
import uuid
from datetime import timedelta

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from . import Figure

PER_KIND = 10_000
MESSAGES_PER_CONTACT = 20
REPEATS = 5


def per_kind(scale: int) -> int:
    # 50 pages of 50 over 8 kinds needs about 320 of each.
    return min(PER_KIND, max(400, scale))


def seed_crowd(scale: int, now) -> None:
    """`scale` contacts with MESSAGES_PER_CONTACT messages and one delivery each, by SQL."""
    from channels.models import Delivery, Message
    from contacts.models import Contact

    from .journey_tick import _insert_select, _insert_series

    base = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    _insert_series(Contact, scale, {"external_id": "'t' || g", "email": "'t' || g || '@example.com'"})
    first_message = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    if connection.vendor == "postgresql":
        series, prefix = f"generate_series(1, {MESSAGES_PER_CONTACT}) g", ""
    else:
        series = "s"
        prefix = f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {MESSAGES_PER_CONTACT}) "
    _insert_select(Message, {"contact_id": "c.id"}, f"FROM contacts_contact c CROSS JOIN {series} WHERE c.id > {base}",
                   defaults={"content": [], "purpose": "marketing", "source": "campaign", "status": "delivered",
                             "created_at": now - timedelta(days=2)}, prefix=prefix)
    _insert_select(Delivery, {"message_id": "m.id", "contact_id": "m.contact_id"},
                   f"FROM channels_message m WHERE m.id > {first_message}",
                   defaults={"channel": "email", "provider": "sandbox", "to_address": "crowd@example.com",
                             "subject": "Our news", "text_body": "News", "status": "delivered",
                             "queued_at": now - timedelta(days=2), "delivered_at": now - timedelta(days=2)})


def seed_busy_contact(count: int, now):
    """One contact with `count` entries of every kind; returns it."""
    from campaigns.models import Enrollment, Journey, JourneyStepVisit
    from channels.models import Delivery, DeliveryEvent, InboundMessage, Message
    from compliance.models import ConsentChange, Decision
    from contacts.models import Contact, ContactEvent
    from omni.lib.bulk import insert_rows

    contact = Contact.objects.create(external_id="busy", email="busy@example.com", phone="+14155550199",
                                     first_name="Busy")
    journey = Journey.objects.create(name="Bench journey", slug=f"bench-{uuid.uuid4().hex[:8]}")
    times = [now - timedelta(seconds=i // 3 + 1) for i in range(count)]
    insert_rows(ContactEvent, ["contact_id", "name", "occurred_at", "idempotency_key"],
                [(contact.pk, "page_viewed", at, f"busy-{i}") for i, at in enumerate(times)])
    insert_rows(ConsentChange, ["contact_id", "channel", "purpose", "status", "source", "occurred_at"],
                [(contact.pk, "sms" if i % 2 else "email", "marketing", "granted", "api", at)
                 for i, at in enumerate(times)])
    enrollments = insert_rows(Enrollment, ["journey_id", "contact_id", "state", "entered_at", "ended_at"],
                              [(journey.pk, contact.pk, "completed", at, at) for at in times], set_ids=True)
    insert_rows(JourneyStepVisit, ["enrollment_id", "journey_id", "step_key", "step_kind", "visit_number",
                                   "visited_at"],
                [(enrollment, journey.pk, "email", "send", 1, at) for enrollment, at in zip(enrollments, times)])
    Decision.objects.bulk_create([
        Decision(decided_at=at, contact_id=contact.pk, channel="email", purpose="marketing", outcome="allow",
                 reason="allowed", consent_status="granted",
                 inputs={"rules": [{"rule": "consent", "result": "pass", "reason": "granted"}]})
        for at in times], batch_size=2000)
    messages = insert_rows(Message, ["contact_id", "purpose", "source", "content", "status", "created_at"],
                           [(contact.pk, "marketing", "api", [], "delivered", at) for at in times], set_ids=True)
    deliveries = insert_rows(Delivery, ["message_id", "contact_id", "channel", "provider", "to_address", "subject",
                                        "text_body", "html_body", "status", "queued_at", "delivered_at"],
                             [(message, contact.pk, "email", "sandbox", "busy@example.com", "Hello",
                               "Hello there", "<p>Hello <b>there</b></p>", "delivered", at, at)
                              for message, at in zip(messages, times)], set_ids=True)
    insert_rows(DeliveryEvent, ["delivery_id", "provider", "provider_event_id", "event_type", "occurred_at"],
                [(delivery, "sandbox", f"busy-{delivery}", "delivered", at) for delivery, at in zip(deliveries, times)])
    insert_rows(InboundMessage, ["contact_id", "channel", "provider", "provider_message_id", "from_address", "body",
                                 "received_at"],
                [(contact.pk, "sms", "sandbox", f"busy-in-{i}", "+14155550199", "thanks", at)
                 for i, at in enumerate(times)])
    if connection.vendor == "postgresql":
        # As autovacuum leaves a live table after a bulk load: statistics, and a visibility map
        # that lets index-only scans skip the heap (VACUUM only outside a transaction, as in a test).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE" if connection.in_atomic_block else "VACUUM ANALYZE")
    return contact


def _timed(client, url, params) -> tuple[float, int, int]:
    """The median of REPEATS requests in ms, the queries of the last, its status."""
    timings = []
    for _ in range(REPEATS):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url, params)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), len(captured), response.status_code


def measure(scale: int, log=lambda line: None) -> list[Figure]:
    from django.contrib.auth.models import User

    from omni.web import timeline

    now = timezone.now()
    seed_crowd(scale, now)
    count = per_kind(scale)
    contact = seed_busy_contact(count, now)
    log(f"timeline: seeded {scale * MESSAGES_PER_CONTACT} crowd deliveries and {count} entries of every kind")

    user = User.objects.create_superuser(f"bench-{uuid.uuid4().hex[:8]}", "bench@example.com", None)
    client = Client()
    client.force_login(user)
    url = reverse("omni-web:timeline", args=[contact.pk])

    first_ms, queries, status = _timed(client, url, {"order": "newest"})
    cursor = None
    for _ in range(49):
        cursor = timeline.read_page(contact, user, cursor=cursor).next_cursor
    page_50_ms, queries_50, status_50 = _timed(client, url, {"order": "newest", "cursor": cursor})
    homes = _homes()
    slowest_role = max(homes, key=lambda role: homes[role][0])
    notes = f"{count} entries of each of 8 kinds, {scale * MESSAGES_PER_CONTACT} other deliveries; " \
            f"whole page (view, template, side panel), median of {REPEATS}"
    if (status, status_50) != (200, 200):
        notes += f"; statuses {status}, {status_50}"
    return [
        Figure("timeline", "first_page_ms", first_ms, "ms", timeline.PAGE_SIZE, notes=notes),
        Figure("timeline", "page_50_ms", page_50_ms, "ms", timeline.PAGE_SIZE, notes=notes),
        Figure("timeline", "queries_per_page", max(queries, queries_50), "queries", timeline.PAGE_SIZE,
               notes=f"first page {queries}, 50th {queries_50}"),
        Figure("timeline", "home_ms", homes[slowest_role][0], "ms", len(homes),
               notes=f"slowest: {slowest_role}; " + ", ".join(
                   f"{role} {ms:.1f} ms ({queries} queries{'' if status == 200 else f', status {status}'})"
                   for role, (ms, queries, status) in homes.items())),
    ]


def _homes() -> dict[str, tuple[float, int, int]]:
    """Each role's home, timed as a member of the role's group (a superuser too): (ms, queries, status)."""
    from django.contrib.auth.models import Group, User

    homes = {}
    for role in ("Marketers", "Support agents", "Compliance", "Administrators", "superuser"):
        name = f"bench-{role.split()[0].lower()}-{uuid.uuid4().hex[:6]}"
        if role == "superuser":
            user = User.objects.create_superuser(name, "bench@example.com", None)
        else:
            user = User.objects.create_user(name, is_staff=True)
            user.groups.add(Group.objects.get(name=role))
        client = Client()
        client.force_login(user)
        client.get("/admin/")  # the per-process caches (content types, permissions)
        homes[role] = _timed(client, "/admin/", {})
    return homes


def run(scale: int, *, figures, log) -> list[Figure]:
    return measure(scale, log=log)
