"""Inbound SMS and WhatsApp over Twilio's webhook: signed posts to /webhooks/twilio/inbound/ on
Omni served by gunicorn (two sync workers), loaded as ingest_http is (omni.bench.http).

Seeds, by bulk SQL, `scale` contacts with phone numbers and 20 sent Twilio deliveries each (six
WhatsApp, fourteen SMS), so replies find the delivery they answer. Then GET /healthz and the
inbound webhook under the same load (32 connections, scale/1000 seconds each, 1 to 10, after a
one-second warm-up, after which the tables it wrote are analyzed, as autovacuum would on a
live system: analyze_what_the_warmup_wrote). Each post is what Twilio sends for an inbound
message, signed as Twilio signs it (X-Twilio-Signature, twilio's RequestValidator with the
auth token the server is given, over OMNI_PUBLIC_URL and the parameters): about three in ten
from WhatsApp ("whatsapp:+1..."), one in ten a retry of an earlier MessageSid, one in ten from
an unknown number (each such number writes about six times, from both of the load's threads at
about the same moment). The load generator cannot sign, so the posts are prepared here, as many as
/healthz's rate would answer and a tenth more, one file per wrk thread (omni.bench.load's
"prepared" mode).

Then, the server stopped, ONE_AT_A_TIME more posts through Django's test client in this process:
`inbound_ms_alone` and `queries_per_inbound`, the cost of one inbound message without contention.

Afterwards, with every post finished: no inbound lost or stored twice (the distinct MessageSids
posted against InboundMessage rows), every reply from a known number linked to a delivery, one
conversation not closed per contact and channel, and one contact, marked unknown_sender, per
unknown number. The last two are reported as "not built yet" (value -1, that unit) while
record_inbound_message opens no conversation and makes no contact.
"""
import hashlib
import math
import os
import secrets
import statistics
import tempfile
import time
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from . import Figure
from .http import compared_with_healthz, healthz_ceiling, rate, run_load, web_server
from .load import THREADS

DELIVERIES_PER_CONTACT = {"sms": 14, "whatsapp": 6}
RETRY_EVERY = 10
# Numbers in these blocks are valid US numbers (phonenumbers), apart from other benchmarks'.
KNOWN_PHONE_BASE = 14153000000
UNKNOWN_PHONE_BASE = 16283000000
OMNI_NUMBER = "+14155550100"
OMNI_WHATSAPP_NUMBER = "+14155238886"
BODIES = [
    "Hi, when will my order arrive?",
    "Thanks! See you Tuesday.",
    "Can I change the delivery address to 12 Elm St?",
    "Is the offer still on this weekend?",
    "Merci, à demain 👍",
    "What time do you open tomorrow?",
    "I was charged twice for order 4411, can someone look?",
    "ok",
]
NOT_BUILT = -1
# The posts the server accepted before the load ended are finished when the count of inbound
# rows stays put this long (bounded by SETTLE_TIMEOUT).
SETTLE_QUIET = 1.0
SETTLE_TIMEOUT = 30.0
# Posts sent one at a time after the load, for the cost of one inbound message alone.
ONE_AT_A_TIME = 40


def run(scale: int, *, figures, log) -> list[Figure]:
    from channels.models import InboundMessage

    known = seed(scale)
    log(f"inbound_webhook: seeded {known} contacts with {known * sum(DELIVERIES_PER_CONTACT.values())} sent "
        "deliveries")
    seconds = min(10, max(1, scale // 1000))
    token = settings.TWILIO_AUTH_TOKEN or secrets.token_hex(16)
    url = settings.OMNI_PUBLIC_URL + reverse("webhooks:twilio-inbound")
    first_inbound = InboundMessage.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    posted: dict[str, dict] = {}
    server_env = {"TWILIO_AUTH_TOKEN": token, "OMNI_PUBLIC_URL": settings.OMNI_PUBLIC_URL}
    with web_server(log, env=server_env) as base, tempfile.TemporaryDirectory() as workdir:
        ceiling = healthz_ceiling(base, seconds)
        # Enough posts for the endpoint to answer as fast as /healthz; wrk starts over if it runs out.
        warmup = _post(base, workdir, token, url, "warmup", math.ceil(rate(ceiling) * 1.1 / THREADS) + 20, known, 1,
                       posted)
        analyze_what_the_warmup_wrote(first_inbound)
        result = _post(base, workdir, token, url, "run", math.ceil(rate(ceiling) * seconds * 1.1 / THREADS) + 20,
                       known, seconds, posted)
        settled_in = _settle(first_inbound)
    retries = sum(result["issued"]) + sum(warmup["issued"]) - len(posted)
    timings, queries = _one_at_a_time(token, known, posted)
    checks = check(posted, first_inbound)
    log(f"inbound_webhook: {len(posted)} MessageSids posted, {checks['stored']} stored; settled in {settled_in:.1f}s")
    ran_out = "; the prepared posts ran out and wrk started over (more retries)" if result["ran_out"] else ""
    summary = (f"{sum(result['issued'])} posts begun; {checks['stored']} stored of {len(posted)} MessageSids posted, "
               f"the warm-up and the {len(timings)} alone included ({retries} retries under load){ran_out}; "
               f"non-2xx {result['non_2xx']}, socket errors {result['errors']}")
    return compared_with_healthz("inbound_webhook", "inbound", ceiling, result, seconds=seconds,
                                 what="POST /webhooks/twilio/inbound/ (signed)", check=summary) + [
        Figure("inbound_webhook", "inbound_ms_alone", statistics.median(timings), "ms", len(timings),
               notes=f"the median of {len(timings)} posts one at a time in this process, nothing else posting "
                     f"(slowest {max(timings):.1f} ms)"),
        Figure("inbound_webhook", "queries_per_inbound", statistics.median(queries), "queries", len(queries),
               notes=f"the same posts: {min(queries)} to {max(queries)}"),
        Figure("inbound_webhook", "inbound_lost", checks["lost"], "MessageSids", len(posted),
               notes=f"posted, not stored; {checks['unposted']} stored that were never posted"),
        Figure("inbound_webhook", "inbound_stored_twice", checks["twice"], "MessageSids", checks["stored"]),
        Figure("inbound_webhook", "replies_not_linked", checks["not_linked"], "inbound", checks["from_known"],
               notes="from a known number on a channel it was sent on, yet no in_reply_to delivery"),
        checks["conversations"],
        checks["unknown_contacts"],
    ]


def analyze_what_the_warmup_wrote(first_inbound: int) -> None:
    """ANALYZE, once the warm-up's posts are stored, as autovacuum does on a live system once a
    table has changed by 50 rows (within its one-minute nap).

    The seed's ANALYZE found conversations and inbound messages empty. With those statistics the
    plan PostgreSQL caches for a prepared statement after its first runs reads those tables
    whole (a sequential scan of a table believed empty looks free), and keeps it until the
    table is analyzed again: within the load's seconds, every post would read all the
    conversations and messages stored before it, a cost no running system has."""
    if connection.vendor != "postgresql":
        return
    _settle(first_inbound)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE channels_conversation, channels_inboundmessage, contacts_contactevent, "
                       "omni_auditentry, contacts_contact")


def seed(scale: int) -> int:
    """`scale` contacts with phones and DELIVERIES_PER_CONTACT sent Twilio deliveries on each channel
    (a message apiece), by INSERT ... SELECT. Returns how many contacts."""
    from channels.models import Delivery, Message
    from contacts.models import Contact

    from .journey_tick import _insert_select, _insert_series

    now = timezone.now()
    base = Contact.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    _insert_series(Contact, scale, {"external_id": "'w' || g", "phone": f"'+' || ({KNOWN_PHONE_BASE} + g)",
                                    "first_name": "'Wren'"})
    if connection.vendor == "postgresql":
        series, prefix = "generate_series(1, {count}) g", ""
    else:
        series = "s"
        prefix = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {count}) "
    for channel, count in DELIVERIES_PER_CONTACT.items():
        first_message = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        _insert_select(Message, {"contact_id": "c.id"},
                       f"FROM contacts_contact c CROSS JOIN {series.format(count=count)} WHERE c.id > {base}",
                       defaults={"content": [], "purpose": "marketing", "source": "campaign", "status": "sent",
                                 "created_at": now - timedelta(days=1)}, prefix=prefix.format(count=count))
        _insert_select(Delivery, {
            "message_id": "m.id", "contact_id": "m.contact_id", "to_address": "c.phone",
            "provider_message_id": "'SMseed' || m.id",
        }, f"FROM channels_message m JOIN contacts_contact c ON c.id = m.contact_id WHERE m.id > {first_message}",
            defaults={"channel": channel, "provider": "twilio", "text_body": "Your order is on its way",
                      "status": "sent", "queued_at": now - timedelta(days=1), "sent_at": now - timedelta(days=1)})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return scale


def inbound_params(tag: str, thread: int, n: int, contacts: int) -> dict:
    """The parameters Twilio posts for the n-th new message of a load thread."""
    sid = "SM" + hashlib.md5(f"{tag}-{thread}-{n}".encode()).hexdigest()
    if n % 10 == 3:
        # Shared by both threads, so two posts from one new number often arrive together.
        phone = f"+{UNKNOWN_PHONE_BASE + n // 30}"
    else:
        phone = f"+{KNOWN_PHONE_BASE + 1 + (n * 7 + thread) % contacts}"
    whatsapp = n % 7 < 2
    params = {
        "ToCountry": "US", "ToState": "CA", "ToCity": "SAN FRANCISCO", "ToZip": "94105",
        "FromCountry": "US", "FromState": "CA", "FromCity": "SAN FRANCISCO", "FromZip": "94105",
        "SmsMessageSid": sid, "SmsSid": sid, "MessageSid": sid, "SmsStatus": "received",
        "AccountSid": settings.TWILIO_ACCOUNT_SID or "AC" + "0" * 32, "ApiVersion": "2010-04-01",
        "Body": BODIES[n % len(BODIES)], "NumSegments": "1", "NumMedia": "0",
        "From": f"whatsapp:{phone}" if whatsapp else phone,
        "To": f"whatsapp:{OMNI_WHATSAPP_NUMBER}" if whatsapp else OMNI_NUMBER,
    }
    if whatsapp:
        params.update({"ProfileName": "Wren", "WaId": phone[1:], "MessageType": "text"})
    if n % 20 == 7:
        params.update({"NumMedia": "1", "MediaContentType0": "image/jpeg",
                       "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/AC/Messages/{sid}/Media/ME{sid[2:]}"})
    return params


def prepare(workdir: str, token: str, url: str, tag: str, per_thread: int, contacts: int) -> list[list[dict]]:
    """Write each load thread's posts, signed, to workdir/<thread>.txt (omni.bench.load's prepared
    format); the parameters of each, in order. One in RETRY_EVERY repeats the post five before."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(token)
    threads = []
    for thread in range(1, THREADS + 1):
        posts, lines = [], []
        for counter in range(1, per_thread + 1):
            if counter % RETRY_EVERY == 0:
                posts.append(posts[counter - 6])
                lines.append(lines[counter - 6])
                continue
            params = inbound_params(tag, thread, counter, contacts)
            posts.append(params)
            lines.append(f"{validator.compute_signature(url, params)}\t{urlencode(params)}\n")
        with open(os.path.join(workdir, f"{thread}.txt"), "w", encoding="utf-8") as out:
            out.writelines(lines)
        threads.append(posts)
    return threads


def _post(base, workdir, token, url, tag, per_thread, contacts, seconds, posted: dict) -> dict:
    """Prepare and run one load; add the MessageSids it began to `posted` (sid: parameters)."""
    threads = prepare(workdir, token, url, tag, per_thread, contacts)
    result = run_load("prepared", f"{base}{reverse('webhooks:twilio-inbound')}", seconds=seconds,
                      requests_dir=workdir, header="X-Twilio-Signature",
                      content_type="application/x-www-form-urlencoded")
    for posts, issued in zip(threads, result["issued"]):
        for params in posts[:issued]:
            posted[params["MessageSid"]] = params
    return {**result, "ran_out": any(issued > len(posts) for posts, issued in zip(threads, result["issued"]))}


def _one_at_a_time(token: str, contacts: int, posted: dict) -> tuple[list[float], list[int]]:
    """ONE_AT_A_TIME more posts through Django's test client in this process, the server stopped:
    the milliseconds and queries of each. They join `posted`."""
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings
    from twilio.request_validator import RequestValidator

    path = reverse("webhooks:twilio-inbound")
    validator = RequestValidator(token)
    client = Client()
    timings, queries = [], []
    with override_settings(TWILIO_AUTH_TOKEN=token, ALLOWED_HOSTS=["testserver"]):
        for n in range(1, ONE_AT_A_TIME + 1):
            params = inbound_params("alone", 1, n, contacts)
            signature = validator.compute_signature(settings.OMNI_PUBLIC_URL + path, params)
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.post(path, urlencode(params), content_type="application/x-www-form-urlencoded",
                                       headers={"X-Twilio-Signature": signature})
                timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"An inbound post was answered {response.status_code}: {response.content[:300]!r}")
            queries.append(len(captured))
            posted[params["MessageSid"]] = params
    return timings, queries


def _settle(first_inbound: int) -> float:
    """Wait until the inbound rows stop growing: the posts in flight when the load stopped."""
    from channels.models import InboundMessage

    started = last_change = time.monotonic()
    count = -1
    while time.monotonic() - started < SETTLE_TIMEOUT:
        now_count = InboundMessage.objects.filter(pk__gt=first_inbound).count()
        if now_count != count:
            count, last_change = now_count, time.monotonic()
        elif time.monotonic() - last_change >= SETTLE_QUIET:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def check(posted: dict[str, dict], first_inbound: int) -> dict:
    """What the database holds against what was posted."""
    from channels.models import Conversation, ConversationStatus, InboundMessage
    from channels.webhooks.twilio import split_address
    from contacts.models import Contact

    rows = InboundMessage.objects.filter(pk__gt=first_inbound, provider="twilio")
    stored_sids = list(rows.values_list("provider_message_id", flat=True))
    distinct = set(stored_sids)
    known_first, known_last = f"+{KNOWN_PHONE_BASE + 1}", f"+{KNOWN_PHONE_BASE + 999_999}"
    from_known = rows.filter(from_address__gte=known_first, from_address__lte=known_last)
    result = {
        "stored": len(stored_sids),
        "lost": len(set(posted) - distinct),
        "unposted": len(distinct - set(posted)),
        "twice": len(stored_sids) - len(distinct),
        "from_known": from_known.count(),
        "not_linked": from_known.filter(in_reply_to__isnull=True).count(),
    }

    pairs = set(rows.exclude(contact=None).values_list("contact_id", "channel"))
    conversations = Conversation.objects.filter(contact__in=rows.values("contact_id"))
    not_closed = {
        (contact, channel): n for contact, channel, n in
        conversations.exclude(status=ConversationStatus.CLOSED).values("contact_id", "channel")
        .annotate(n=Count("id")).order_by().values_list("contact_id", "channel", "n")
    }
    if not conversations.exists():
        result["conversations"] = Figure(
            "inbound_webhook", "conversations_not_one_per_contact_channel", NOT_BUILT, "not built yet", len(pairs),
            notes=f"no conversation for the {len(pairs)} contact and channel pairs that wrote in: "
                  "record_inbound_message opens none yet")
    else:
        faults = sum(not_closed.get(pair, 0) != 1 for pair in pairs)
        without = rows.exclude(contact=None).filter(conversation=None).count()
        result["conversations"] = Figure(
            "inbound_webhook", "conversations_not_one_per_contact_channel", faults, "pairs", len(pairs),
            notes=f"contact and channel pairs that wrote in without exactly one conversation not closed; "
                  f"{without} inbound with a contact but no conversation")

    unknown = {split_address(params["From"])[1] for params in posted.values()
               if int(split_address(params["From"])[1][1:]) >= UNKNOWN_PHONE_BASE}
    per_number = {phone: (n, marked) for phone, n, marked in
                  Contact.objects.filter(phone__in=unknown).values("phone")
                  .annotate(n=Count("id"), marked=Count("id", filter=Q(unknown_sender=True))).order_by()
                  .values_list("phone", "n", "marked")}
    if not per_number:
        result["unknown_contacts"] = Figure(
            "inbound_webhook", "unknown_senders_not_one_contact", NOT_BUILT, "not built yet", len(unknown),
            notes=f"no contact for any of the {len(unknown)} unknown numbers: record_inbound_message makes none yet")
    else:
        faults = sum(per_number.get(phone, (0, 0)) != (1, 1) for phone in unknown)
        unlinked = rows.filter(from_address__in=unknown, contact=None).count()
        result["unknown_contacts"] = Figure(
            "inbound_webhook", "unknown_senders_not_one_contact", faults, "numbers", len(unknown),
            notes="unknown numbers without exactly one contact, marked unknown_sender; "
                  f"{unlinked} of their inbound without a contact")
    return result
