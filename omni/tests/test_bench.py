"""The benchmarks run at smoke scale and report honest counts (speed is never judged here)."""
import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from omni.bench import campaign_fanout, gate, inbound, journey_tick, timeline


@pytest.mark.django_db
def test_the_tick_benchmark_reports_every_figure_and_no_duplicates():
    # at smoke scale the batches the beat's tick claimed run in this process
    figures = {f.metric: f for f in journey_tick.measure(20)}

    assert (figures["duplicate_messages"].value, figures["steps_run_twice"].value) == (0, 0)
    # 200 enrollments, 20 due, four at each place: four split, update, branch and send (16
    # steps), four wait until 09:00 and four for a date (8), four are woken by their event and
    # send (8), four start waiting for their webhook's answer (no step yet); eight emails.
    assert (figures["due_steps_per_second"].n, figures["steps_per_second"].n) == (20, 32)
    assert figures["due_not_run"].value == 0
    assert figures["celery_messages_per_1000_deliveries"].n == 8
    assert "tick woke 4 and claimed 20" in figures["steps_per_second"].notes
    assert {f.bench for f in figures.values()} == {"journey_tick"}
    # rates and costs measured from work that happened are positive (a figure stuck at 0 fails)
    for metric in ("steps_per_second", "due_steps_per_second", "tick_claims_per_second", "queries_per_1000_steps"):
        assert figures[metric].value > 0, metric


@pytest.mark.django_db
def test_the_campaign_fanout_benchmark_decides_every_recipient_once():
    # at smoke scale the batches the beat's tick claimed are sent in this process
    figures = {f.metric: f for f in campaign_fanout.measure(60)}

    # 60 contacts, all in the segment: each recipient decided, one message each at most
    assert figures["contacts_per_s"].n == 60 and figures["contacts_per_s"].value > 0
    assert (figures["duplicate_messages"].value, figures["recipients_undecided"].value) == (0, 0)
    assert "campaign sent" in figures["contacts_per_s"].notes
    # the gate ruled on email, SMS and WhatsApp (what it allowed depends on the clock: quiet hours)
    ruled = figures["contacts_per_s"].notes.split("gate decisions ")[1]
    for channel in ("'email'", "'sms'", "'whatsapp'"):
        assert channel in ruled, channel
    # (inside the test's transaction nothing commits, so no send task is published)
    assert figures["celery_messages_per_1000_contacts"].value <= 100
    assert figures["queries_per_1000_contacts"].value > 0


@pytest.mark.django_db
def test_the_gate_benchmark_decides_every_send_in_a_handful_of_queries():
    figures = {f.metric: f for f in gate.measure(40)}

    assert figures["us_per_message"].n == 40 and figures["us_per_message"].value > 0
    assert figures["queries_per_batch"].value <= 8
    assert figures["check_p99_ms"].value > 0
    # every rule had something to say about some contact
    for reason in ("quiet_hours", "frequency_cap", "suppressed:complaint"):
        assert reason in figures["us_per_message"].notes


@pytest.mark.django_db
def test_the_timeline_benchmark_times_the_first_and_the_50th_page():
    figures = {f.metric: f for f in timeline.measure(5)}

    assert figures["first_page_ms"].value > 0 and figures["page_50_ms"].value > 0
    assert "statuses" not in figures["page_50_ms"].notes
    assert figures["queries_per_page"].value <= 32
    # every role's home answered, the slowest named
    assert figures["home_ms"].value > 0 and figures["home_ms"].n == 5
    assert "slowest:" in figures["home_ms"].notes


@pytest.mark.django_db
def test_the_inbound_benchmark_counts_a_post_that_was_never_stored(client, settings):
    from twilio.request_validator import RequestValidator

    # given the benchmark's contacts and deliveries, and ten of its posts of which the first never arrives
    settings.TWILIO_AUTH_TOKEN = "bench-token"
    contacts = inbound.seed(5)
    path = "/webhooks/twilio/inbound/"
    posts = [inbound.inbound_params("t", 1, n, contacts) for n in range(1, 11)]
    for params in posts[1:]:
        signature = RequestValidator("bench-token").compute_signature(settings.OMNI_PUBLIC_URL + path, params)
        assert client.post(path, params, headers={"X-Twilio-Signature": signature}).status_code == 200

    # when
    checks = inbound.check({params["MessageSid"]: params for params in posts}, first_inbound=0)

    # then the lost one is counted, and every reply from a known number (n=3 is unknown) found its delivery
    assert (checks["stored"], checks["lost"], checks["twice"], checks["unposted"]) == (9, 1, 0, 0)
    assert (checks["from_known"], checks["not_linked"]) == (8, 0)
    assert {params["From"].startswith("whatsapp:") for params in posts} == {True, False}  # SMS and WhatsApp
    # one conversation for each contact and channel that wrote in, one contact for the unknown number
    assert (checks["conversations"].value, checks["conversations"].unit) == (0, "pairs")
    assert (checks["unknown_contacts"].value, checks["unknown_contacts"].n) == (0, 1)


@pytest.mark.django_db
def test_the_inbound_benchmark_finds_a_pair_without_a_conversation_and_an_unmarked_unknown_contact():
    from channels.models import Conversation, InboundMessage
    from contacts.models import Contact

    # given two contacts that wrote in, only the first with a conversation, and an unknown number
    # whose contact is not marked as an unknown sender
    first, second = Contact.objects.create(phone="+14153000001"), Contact.objects.create(phone="+14153000002")
    stranger = Contact.objects.create(phone=f"+{inbound.UNKNOWN_PHONE_BASE}")
    conversation = Conversation.objects.create(contact=first, channel="sms")
    posted = {}
    for number, contact in enumerate((first, second, stranger)):
        params = inbound.inbound_params("t", 1, 1, 1)
        params.update(MessageSid=f"SM{number}", From=contact.phone)
        posted[params["MessageSid"]] = params
        InboundMessage.objects.create(contact=contact, channel="sms", provider="twilio",
                                      provider_message_id=f"SM{number}", from_address=contact.phone,
                                      conversation=conversation if contact == first else None)

    # when
    checks = inbound.check(posted, first_inbound=0)

    # then
    assert (checks["conversations"].value, checks["conversations"].n) == (2, 3)  # the second's, and the stranger's
    assert (checks["unknown_contacts"].value, checks["unknown_contacts"].n) == (1, 1)
    assert "2 inbound with a contact but no conversation" in checks["conversations"].notes


def test_the_bench_command_runs_every_benchmark_in_its_own_database(tmp_path):
    # given a database URL of its own (the command makes bench_<name> on PostgreSQL, a file in
    # OMNI_VAR_DIR on SQLite), never the test database
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}_cmd"
    else:
        url = f"sqlite:///{tmp_path / 'omni.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": url, "OMNI_VAR_DIR": str(tmp_path), "CELERY_BROKER_URL": "memory://",
           "OMNI_BENCH_BROKER_URL": "memory://"}

    # when
    done = subprocess.run([sys.executable, "manage.py", "bench", "--scale", "20"], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=300)

    # then every figure is a JSON line with the shared fields, and the counts are honest
    assert done.returncode == 0, done.stderr[-3000:]
    figures = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(set(f) == {"bench", "metric", "value", "unit", "n", "subject", "notes"} for f in figures)
    by_name = {(f["bench"], f["metric"]): f for f in figures}
    expected = {"journey_tick", "ingest_http", "ingest_batch", "inbound_webhook", "gate", "timeline", "segment_count",
                "campaign_fanout", "audit_export", "policy_replay", "contact_import"}
    if connection.vendor == "postgresql":
        expected.add("claim_ceiling")
        assert by_name["claim_ceiling", "duplicate_claims"]["value"] == 0
        assert by_name["claim_ceiling", "steps_per_s"]["n"] == 20
        assert ("journey_tick", "ratio_to_claim_ceiling") in by_name
    assert {f["bench"] for f in figures} == expected
    assert by_name["journey_tick", "duplicate_messages"]["value"] == 0
    assert by_name["campaign_fanout", "duplicate_messages"]["value"] == 0
    assert by_name["campaign_fanout", "recipients_undecided"]["value"] == 0
    assert by_name["ingest_http", "events_non_2xx"]["value"] == 0
    assert by_name["ingest_http", "events_requests_per_s"]["n"] > 0
    assert by_name["ingest_batch", "events_not_stored"]["value"] == 0
    # signed inbound webhooks: every one accepted, each MessageSid stored once, replies linked
    assert by_name["inbound_webhook", "inbound_requests_per_s"]["n"] > 0
    assert by_name["inbound_webhook", "inbound_non_2xx"]["value"] == 0
    assert by_name["inbound_webhook", "inbound_lost"]["n"] > 0
    assert by_name["inbound_webhook", "queries_per_inbound"]["value"] > 0
    for metric in ("inbound_lost", "inbound_stored_twice", "replies_not_linked"):
        assert by_name["inbound_webhook", metric]["value"] == 0, by_name["inbound_webhook", metric]
    for metric in ("conversations_not_one_per_contact_channel", "unknown_senders_not_one_contact"):
        figure = by_name["inbound_webhook", metric]
        assert (figure["value"], figure["unit"] != "not built yet") == (0, True), figure
    assert by_name["gate", "us_per_message"]["n"] == 20 and by_name["gate", "queries_per_batch"]["value"] <= 8
    assert by_name["timeline", "first_page_ms"]["n"] == 50 and by_name["timeline", "page_50_ms"]["value"] > 0
    assert by_name["segment_count", "queries_per_count"]["value"] == 1
    assert "ratio_to_healthz" in {f["metric"] for f in figures}
    assert "events_per_s" in done.stderr  # the table


def test_the_bench_command_refuses_an_unknown_benchmark():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="Unknown benchmark"):
        call_command("bench", only=["journey_tick,nope"])


def test_the_bench_command_says_what_to_install_when_a_package_is_missing(monkeypatch):
    from django.core.management import CommandError, call_command

    from omni import bench

    # given a benchmark that needs a package this environment does not have
    monkeypatch.setitem(bench.NEEDS, "ingest_batch", {"no_such_package_here": "requirements-dev.txt"})

    with pytest.raises(CommandError, match=r"no_such_package_here \(pip install -r requirements-dev.txt\)"):
        call_command("bench", only=["ingest_batch"], scale=1)


@pytest.mark.django_db
def test_the_segment_count_benchmark_counts_the_members_in_one_query():
    from omni.bench import segment_count

    figures = {f.metric: f for f in segment_count.measure(300)}

    # the count it times is the count of the contacts the three filters keep, in one query
    members = figures["count_seconds"].n
    assert 0 < members == segment_count.expected_members(300, timezone.now())
    assert figures["queries_per_count"].value == 1
    assert figures["count_seconds"].value > 0 and figures["seed_seconds"].n == 300 * 6
    assert "1 distinct answer(s)" in figures["count_seconds"].notes


@pytest.mark.django_db
def test_the_segment_count_benchmark_keeps_the_same_members_wherever_the_contact_ids_start():
    from django.core.management.color import no_style

    from contacts.models import Contact
    from omni.bench import segment_count

    # given contact ids that go on from 251 (as after rows that were rolled back used up ids),
    # where events laid out by contact id left no member at all at this scale
    Contact.objects.create(pk=250)
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), [Contact]):
            cursor.execute(sql)
    Contact.objects.filter(pk=250).delete()

    # when
    figures = {f.metric: f for f in segment_count.measure(300)}

    # then the members are the same 27 of the 300 as from any other start
    assert Contact.objects.filter(external_id="seg1").get().pk == 251
    assert figures["count_seconds"].n == segment_count.expected_members(300, timezone.now()) == 27
