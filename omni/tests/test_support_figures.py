"""How support is doing: the figures page and its CSV, on crafted conversations whose figures are
worked out by hand below, the same on SQLite (percentiles in Python) and PostgreSQL (in SQL)."""
import csv
import io
from datetime import date, datetime, timedelta, timezone as dt_timezone

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from channels.models import Conversation, ConversationTag, ResolvedBy, ServiceLevel
from contacts.models import Contact
from omni.models import AuditEntry
from omni.web.support_figures import Period, figures_for, percentile

pytestmark = pytest.mark.django_db

WEEK = Period(date(2026, 3, 2), date(2026, 3, 8))  # Monday to Sunday
FORMULA_AGENT = "=HYPERLINK(\"http://x.example/\")"
FORMULA_TAG = "=cmd|' /C calc'!A0"


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=dt_timezone.utc)


def conversation(contact, channel, opened, *, agent=None, first_response=None, first_response_business=None,
                 closed=None, resolution_business=None, resolved_by=ResolvedBy.AGENT, satisfaction=None, tags=()):
    """A conversation as the actions leave it: times in real seconds from its timestamps, and in
    business seconds as given (the same as real unless said)."""
    real_first = int((first_response - opened).total_seconds()) if first_response else None
    real_resolution = int((closed - opened).total_seconds()) if closed else None
    made = Conversation.objects.create(
        contact=contact, channel=channel, assignee=agent, opened_at=opened, last_activity_at=closed or opened,
        status="closed" if closed else "open", first_response_at=first_response,
        first_response_seconds=real_first,
        first_response_business_seconds=first_response_business if first_response_business is not None else real_first,
        closed_at=closed, resolution_seconds=real_resolution,
        resolution_business_seconds=resolution_business if resolution_business is not None else real_resolution,
        resolved_by=resolved_by if closed else "", satisfaction=satisfaction,
    )
    for name in tags:
        made.tags.add(ConversationTag.objects.get_or_create(name=name)[0])
    return made


@pytest.fixture
def agents(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", first_name="Alice", last_name="Archer",
                                                  is_staff=True)
    formula = django_user_model.objects.create_user(username=FORMULA_AGENT, is_staff=True)
    return alice, formula


@pytest.fixture
def a_week(agents):
    """One week of conversations; the figures each test expects are worked out beside them."""
    alice, formula = agents
    ServiceLevel.objects.create(channel="sms", first_response_minutes=60, resolution_minutes=240)
    ServiceLevel.objects.create(channel="whatsapp", first_response_minutes=30, resolution_minutes=120)
    people = [Contact.objects.create(external_id=f"c{n}") for n in range(10)]
    # SMS, Alice: answered in 10 min, resolved in 2 h (both within), satisfied
    conversation(people[0], "sms", at(2, 9), agent=alice, first_response=at(2, 9, 10), closed=at(2, 11), satisfaction=5)
    # SMS, Alice: answered the next morning (16.5 h, 30 min of business time: within), resolved after
    # 25 h (20,000 business seconds: missed), unhappy; the contact writes again exactly 7 days after the close
    conversation(people[1], "sms", at(3, 17), agent=alice, first_response=at(4, 9, 30), first_response_business=1800,
                 closed=at(4, 18), resolution_business=20_000, satisfaction=2)
    conversation(people[1], "sms", at(11, 18))
    # SMS, Alice: answered after 2 h (missed), still open
    conversation(people[2], "sms", at(5, 10), agent=alice, first_response=at(5, 12))
    # SMS, nobody: closed by automation in 5 min, and the contact writes again two days later (open, nobody)
    conversation(people[3], "sms", at(6, 12), closed=at(6, 12, 5), resolved_by=ResolvedBy.AUTOMATION)
    conversation(people[3], "sms", at(8, 12))
    # SMS, Alice: opened before the period, answered before it, closed at its first moment
    conversation(people[4], "sms", at(1, 23), agent=alice, first_response=at(1, 23, 30), closed=at(2),
                 resolution_business=600)
    # WhatsApp, the agent named like a formula: answered in 20 min (within), resolved in exactly 2 h (within),
    # tagged like a formula, content; the same contact as the first SMS, so no repeat on either channel
    conversation(people[0], "whatsapp", at(3, 8), agent=formula, first_response=at(3, 8, 20), closed=at(3, 10),
                 satisfaction=4, tags=[FORMULA_TAG, "billing"])
    # WhatsApp, the same agent: answered in 1 h and resolved in 5 h (both missed), no answer to the survey
    conversation(people[5], "whatsapp", at(7, 8), agent=formula, first_response=at(7, 9), closed=at(7, 13))
    # Email (no service level), Alice: answered in 30 min, resolved in 1 h
    conversation(people[6], "email", at(4, 9), agent=alice, first_response=at(4, 9, 30), closed=at(4, 10))
    # WhatsApp, nobody: opened on the period's last evening, answered and closed the next morning with a 5,
    # and the contact writes again the day after: a repeat of the next period
    conversation(people[9], "whatsapp", at(8, 20), first_response=at(9, 8), closed=at(9, 9), satisfaction=5)
    conversation(people[9], "whatsapp", at(10, 9))
    # Outside the period: opened at its first moment after; closed just before it starts
    conversation(people[7], "sms", at(9), agent=alice, first_response=at(9, 0, 5))
    conversation(people[8], "whatsapp", at(1, 20), agent=formula, first_response=at(1, 21), closed=at(1, 23, 59, 59))
    # Alice's first SMS contact writes again one second after 7 days: not a repeat
    conversation(people[0], "sms", at(9, 11, 0, 1))
    return alice, formula


def rows_by_key(rows):
    return {row.key: row for row in rows}


def test_the_figures_of_a_channel_count_what_happened_in_the_period(a_week):
    # when
    figures = figures_for(WEEK)

    # then SMS: five opened (not the one before nor the one at the period's end), four closed (one at its start)
    sms = rows_by_key(figures.by_channel)["sms"]
    assert (sms.label, sms.opened, sms.closed) == ("SMS", 5, 4)
    # first responses given in the period: 10 min, 16.5 h (30 min in business time), 2 h
    assert sms.first_response.count == 3
    assert (sms.first_response.real.median, sms.first_response.real.p90) == (7200, pytest.approx(48_960))
    assert (sms.first_response.business.median, sms.first_response.business.p90) == (1800, pytest.approx(6120))
    assert (sms.first_response.within.part, sms.first_response.within.whole) == (2, 3)
    # resolutions in the period: 2 h, 25 h (20,000 s business: missed), 5 min, 1 h (600 s business)
    assert sms.resolution.count == 4
    assert (sms.resolution.real.median, sms.resolution.real.p90) == (5400, pytest.approx(65_160))
    assert (sms.resolution.business.median, sms.resolution.business.p90) == (3900, pytest.approx(16_160))
    assert (sms.resolution.within.part, sms.resolution.within.whole) == (3, 4)
    # one closed by automation; two followed by another within 7 days (one exactly at 7 days)
    assert (sms.by_automation.part, sms.by_automation.whole) == (1, 4)
    assert (sms.repeat_contacts.part, sms.repeat_contacts.whole) == (2, 4)
    # satisfaction: 5 and 2
    assert (sms.satisfaction_average, sms.satisfaction_answers) == (pytest.approx(3.5), 2)
    assert (sms.satisfied.part, sms.satisfied.whole) == (1, 2)


def test_a_channel_without_a_service_level_has_times_but_no_share_within_one(a_week):
    by_channel = rows_by_key(figures_for(WEEK).by_channel)

    whatsapp, email = by_channel["whatsapp"], by_channel["email"]
    assert list(by_channel) == ["email", "sms", "whatsapp"]  # in the order of the channels' choices
    assert (whatsapp.opened, whatsapp.closed) == (3, 2)
    assert (whatsapp.first_response.real.median, whatsapp.first_response.real.p90) == (2400, pytest.approx(3360))
    assert (whatsapp.first_response.within.part, whatsapp.first_response.within.whole) == (1, 2)
    assert (whatsapp.resolution.real.median, whatsapp.resolution.real.p90) == (12_600, pytest.approx(16_920))
    assert (whatsapp.resolution.within.part, whatsapp.resolution.within.whole) == (1, 2)
    assert whatsapp.repeat_contacts.part == 0 and whatsapp.by_automation.part == 0
    assert (whatsapp.satisfaction_average, whatsapp.satisfied.text) == (4.0, "100% (1 of 1)")
    assert (email.first_response.real.median, email.resolution.real.p90) == (1800, 3600)
    assert email.first_response.within.whole == 0 and email.first_response.within.text == "—"
    assert email.satisfaction_average is None and email.satisfaction_text == "—"


def test_each_agent_has_the_figures_of_the_conversations_assigned_to_them(a_week):
    alice, formula = a_week

    by_agent = figures_for(WEEK).by_agent

    assert [row.label for row in by_agent] == [FORMULA_AGENT, "Alice Archer", "Unassigned"]
    rows = rows_by_key(by_agent)
    mine = rows[str(alice.pk)]
    assert (mine.opened, mine.closed, mine.first_response.count) == (4, 4, 4)
    assert (mine.first_response.real.median, mine.first_response.real.p90) == (4500, pytest.approx(43_740))
    assert (mine.first_response.within.part, mine.first_response.within.whole) == (2, 3)  # email has no level
    assert (rows[str(formula.pk)].opened, rows[str(formula.pk)].closed) == (2, 2)
    nobody = rows[""]
    assert (nobody.opened, nobody.closed, nobody.by_automation.text) == (3, 1, "100% (1 of 1)")
    assert nobody.first_response.count == 0 and nobody.first_response.real.median is None


def test_the_total_counts_every_conversation_of_the_period_once(a_week):
    total = figures_for(WEEK).total

    assert (total.conversations, total.opened, total.closed, total.first_response.count) == (10, 9, 7, 6)
    assert (total.first_response.real.median, total.first_response.real.p90) == (2700, pytest.approx(33_300))
    assert (total.first_response.within.part, total.first_response.within.whole) == (3, 5)
    assert (total.resolution.within.part, total.resolution.within.whole) == (4, 6)
    assert (total.by_automation.part, total.repeat_contacts.part, total.repeat_contacts.whole) == (1, 2, 7)
    assert (total.satisfaction_average, total.satisfaction_answers) == (pytest.approx(11 / 3), 3)
    assert (total.satisfied.part, total.satisfied.whole) == (2, 3)


def test_the_period_is_whole_days_in_the_time_zone(settings, agents):
    # given New York's time, where 02:30 UTC on 2 March is still 1 March, and 03:30 UTC on 9 March
    # is 23:30 on 8 March (summer time began there that day at 02:00)
    settings.TIME_ZONE = "America/New_York"
    conversation(Contact.objects.create(external_id="late"), "sms", at(2, 2, 30))
    conversation(Contact.objects.create(external_id="early"), "sms", at(9, 3, 30))

    # when
    with timezone.override("America/New_York"):
        figures = figures_for(WEEK)

    # then only the second one was opened from 2 to 8 March there
    assert figures.total.opened == 1
    assert figures_for(WEEK).total.opened == 1  # and in UTC, only the first


def test_percentile_interpolates_between_ranks_as_postgresql_does():
    assert percentile([], 0.5) is None
    assert percentile([7], 0.9) == 7
    assert percentile([1, 2, 3, 4], 0.5) == 2.5
    assert percentile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 0.9) == pytest.approx(91)


# --- the page --------------------------------------------------------------------------------

@pytest.fixture
def staff(django_user_model, role_groups):
    def make(group_name: str | None, **extra):
        user = django_user_model.objects.create_user(username=(group_name or "root").lower().replace(" ", "-"),
                                                     password="pw", is_staff=True, **extra)
        if group_name:
            user.groups.add(Group.objects.get(name=group_name))
        return user
    return make


PAGE = "/admin/support/figures/"
EXPORT = "/admin/support/figures/export/"
WEEK_QUERY = {"start": "2026-03-02", "end": "2026-03-08"}


def test_the_page_shows_each_table_for_the_chosen_period(client, staff, a_week):
    client.force_login(staff("Support agents"))

    response = client.get(PAGE, WEEK_QUERY)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="figures-by-channel"' in page and 'id="figures-by-agent"' in page
    sms = page[page.index('data-key="sms"'):]
    sms = sms[:sms.index("</tr>")]
    assert '2 h<div class="quiet">90%: 13 h 36 min</div>' in sms  # first response: median, 90th percentile (48,960 s)
    assert '67%<div class="quiet">2 of 3</div>' in sms
    assert "SMS: first response 1 h, resolution 4 h; WhatsApp: first response 30 min, resolution 2 h" in page
    assert "&quot;http://x.example/&quot;" in page  # the agent's name, escaped
    assert f"{EXPORT}?start=2026-03-02&amp;end=2026-03-08&amp;rows=figures" in page


def test_without_a_period_the_page_shows_the_last_seven_days(client, staff):
    # given a conversation opened three minutes ago and answered now, and one eight days ago
    client.force_login(staff("Support agents"))
    now = timezone.now()
    conversation(Contact.objects.create(external_id="now"), "sms", now - timedelta(minutes=3), first_response=now)
    conversation(Contact.objects.create(external_id="old"), "sms", now - timedelta(days=8))

    # when
    response = client.get(PAGE)

    # then
    figures = response.context["figures"]
    today = timezone.localdate()
    assert (figures.period.first_day, figures.period.last_day) == (today - timedelta(days=6), today)
    assert figures.total.opened == 1
    assert '3 min<div class="quiet">90%: 3 min</div>' in response.content.decode()


def test_a_period_with_nothing_in_it_says_so(client, staff, a_week):
    client.force_login(staff("Support agents"))

    response = client.get(PAGE, {"start": "2025-01-01", "end": "2025-01-31"})

    page = response.content.decode()
    assert "No conversation was opened, answered or closed in this period." in page
    assert 'id="figures-by-channel"' not in page


@pytest.mark.parametrize("query, error", [
    ({"start": "2026-03-08", "end": "2026-03-02"}, "The period ends before it starts"),
    ({"start": "2026-03-02", "end": "yesterday"}, "Enter a valid date"),
    ({"start": "2024-01-01", "end": "2026-03-02"}, "Choose at most 366 days"),
])
def test_a_bad_period_is_refused_with_the_reason_and_exports_nothing(client, staff, a_week, query, error):
    client.force_login(staff("Support agents"))

    page = client.get(PAGE, query)
    exported = client.get(EXPORT, query)

    assert page.status_code == 200 and error in page.content.decode() and page.context["figures"] is None
    assert exported.status_code == 400 and error in exported.content.decode()
    assert not AuditEntry.objects.filter(action="support.figures_exported").exists()


def test_an_unknown_kind_of_export_is_refused(client, staff, a_week):
    client.force_login(staff("Support agents"))

    response = client.get(EXPORT, {**WEEK_QUERY, "rows": "contacts"})

    assert response.status_code == 400 and "not “contacts”" in response.content.decode()
    assert not AuditEntry.objects.filter(action="support.figures_exported").exists()


# --- the CSV -----------------------------------------------------------------------------------

def read_csv(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_figures_export_holds_the_tables_with_formula_cells_neutralized_and_is_audited(client, staff, a_week):
    alice, formula = a_week
    exporter = staff("Support agents")
    client.force_login(exporter)

    response = client.get(EXPORT, {**WEEK_QUERY, "rows": "figures"})

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="omni-support-figures-20260302-20260308.csv"'
    rows = read_csv(response)
    assert [(row["table"], row["key"]) for row in rows] == [
        ("total", ""), ("channel", "email"), ("channel", "sms"), ("channel", "whatsapp"),
        ("agent", str(formula.pk)), ("agent", str(alice.pk)), ("agent", "")]
    agent = rows[4]
    assert agent["name"] == "'" + FORMULA_AGENT
    sms = rows[2]
    assert (sms["period_first_day"], sms["period_last_day"], sms["opened"], sms["closed"]) == (
        "2026-03-02", "2026-03-08", "5", "4")
    assert (sms["first_response_median_s"], sms["first_response_p90_s"]) == ("7200.0", "48960.0")
    assert (sms["first_response_within_service_level"], sms["first_response_measured_against_service_level"],
            sms["first_response_within_service_level_share"]) == ("2", "3", "0.6667")
    assert (sms["resolved_by_automation"], sms["repeat_contacts_7_days"], sms["satisfaction_average"]) == (
        "1", "2", "3.50")
    assert rows[1]["first_response_within_service_level_share"] == ""  # email: no service level
    entry = AuditEntry.objects.get(action="support.figures_exported")
    assert (entry.actor_id, entry.reason) == (exporter.pk, "support-figures-csv")
    assert entry.data == {"first_day": "2026-03-02", "last_day": "2026-03-08", "rows": "figures", "conversations": 10}


def test_the_conversations_export_has_one_row_each_with_tags_neutralized_and_is_audited(client, staff, a_week):
    exporter = staff("Administrators")
    client.force_login(exporter)

    response = client.get(EXPORT, {**WEEK_QUERY, "rows": "conversations"})

    rows = read_csv(response)
    assert len(rows) == 10
    assert [row["opened_at"] for row in rows] == sorted(row["opened_at"] for row in rows)
    tagged = next(row for row in rows if row["tags"])
    assert tagged["tags"] == "'" + FORMULA_TAG + ", billing"
    assert tagged["agent"] == "'" + FORMULA_AGENT
    assert (tagged["first_response_s"], tagged["first_response_within_service_level"], tagged["satisfaction"]) == (
        "1200", "yes", "4")
    automated = next(row for row in rows if row["resolved_by"] == "automation")
    assert (automated["repeat_contact_7_days"], automated["resolution_within_service_level"]) == ("yes", "yes")
    still_open = next(row for row in rows if row["status"] == "open" and row["first_response_s"] == "7200")
    assert (still_open["first_response_within_service_level"], still_open["repeat_contact_7_days"]) == ("no", "")
    entry = AuditEntry.objects.get(action="support.figures_exported")
    assert entry.actor_id == exporter.pk
    assert entry.data == {"first_day": "2026-03-02", "last_day": "2026-03-08", "rows": "conversations",
                          "conversations": 10}


def test_an_agent_limited_to_their_own_sees_and_exports_the_figures_of_those_alone(client, a_week, settings):
    settings.OMNI_SUPPORT_AGENTS_SEE_ALL = False
    alice, _ = a_week
    alice.groups.add(Group.objects.get(name="Support agents"))
    client.force_login(alice)

    page = client.get(PAGE, WEEK_QUERY)
    rows = read_csv(client.get(EXPORT, {**WEEK_QUERY, "rows": "conversations"}))
    client.get(EXPORT, {**WEEK_QUERY, "rows": "figures"})

    # five of the week's ten conversations are assigned to Alice; she is in no queue
    assert page.context["figures"].total.conversations == 5
    assert [row.label for row in page.context["figures"].by_agent] == ["Alice Archer"]
    assert len(rows) == 5 and {row["agent"] for row in rows} == {"alice"}
    assert [entry.data["conversations"] for entry in AuditEntry.objects.filter(action="support.figures_exported")
            .order_by("pk")] == [5, 5]


# --- who may see them ----------------------------------------------------------------------------

@pytest.mark.parametrize("group_name, allowed", [
    ("Support agents", True), ("Administrators", True), ("Compliance", True), ("Marketers", False),
])
def test_support_agents_and_administrators_see_the_figures_and_marketers_do_not(client, staff, a_week, group_name,
                                                                                allowed):
    client.force_login(staff(group_name))

    page = client.get(PAGE, WEEK_QUERY)
    exported = client.get(EXPORT, WEEK_QUERY)
    sidebar = client.get("/admin/").context["sidebar_navigation"]

    listed = [item["title"] for group in sidebar for item in group["items"]]
    assert (page.status_code, exported.status_code) == ((200, 200) if allowed else (403, 403))
    assert ("Support figures" in listed) is allowed
    assert AuditEntry.objects.filter(action="support.figures_exported").exists() is allowed


def test_the_figures_sit_under_support_in_the_sidebar(client, staff):
    client.force_login(staff("Support agents"))

    sidebar = {group["title"]: group["items"] for group in client.get("/admin/").context["sidebar_navigation"]}

    assert ("Support figures", reverse("omni-web:support-figures")) in [(item["title"], item["link"])
                                                                        for item in sidebar["Support"]]


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(PAGE)

    assert response.status_code == 302 and "/login/" in response["Location"]


# --- a bounded number of queries ---------------------------------------------------------------

def many_conversations(agents, n: int, name: str = "many"):
    """n conversations over three channels and the agents, each answered, closed and rated."""
    contacts = Contact.objects.bulk_create([Contact(external_id=f"{name}-{i}") for i in range(n)])
    start = at(3, 8)
    tag, _ = ConversationTag.objects.get_or_create(name="bulk")
    made = Conversation.objects.bulk_create([
        Conversation(contact=contact, channel=("sms", "whatsapp", "email")[i % 3], assignee=agents[i % len(agents)],
                     status="closed", opened_at=start + timedelta(minutes=i),
                     first_response_at=start + timedelta(minutes=i + 5),
                     first_response_seconds=300 + i, first_response_business_seconds=300 + i,
                     closed_at=start + timedelta(hours=2, minutes=i), resolution_seconds=7200 + i,
                     resolution_business_seconds=7200 + i, satisfaction=1 + i % 5, resolved_by="agent")
        for i, contact in enumerate(contacts)
    ])
    Conversation.tags.through.objects.bulk_create(
        [Conversation.tags.through(conversation_id=c.pk, conversationtag_id=tag.pk) for c in made])


# service levels, counts per channel and agent, repeat contacts, percentiles
FIGURES_QUERIES = 4


def test_the_figures_take_the_same_few_queries_whatever_the_number_of_conversations(agents, django_assert_num_queries):
    many_conversations(agents, 3)
    with django_assert_num_queries(FIGURES_QUERIES):
        few = figures_for(WEEK)

    many_conversations(agents, 300, name="more")
    with django_assert_num_queries(FIGURES_QUERIES):
        many = figures_for(WEEK)

    assert (few.total.closed, many.total.closed) == (3, 303)
    assert {row.label for row in many.by_agent} == {"Alice Archer", FORMULA_AGENT}


def test_the_page_and_the_exports_take_a_fixed_number_of_queries(client, staff, agents, django_assert_max_num_queries):
    many_conversations(agents, 300)
    client.force_login(staff(None, is_superuser=True))

    # session, user and the two-factor check; the figures; the session's idle-time renewal (3)
    with django_assert_max_num_queries(3 + FIGURES_QUERIES + 3):
        assert client.get(PAGE, WEEK_QUERY).status_code == 200
    with django_assert_max_num_queries(3 + FIGURES_QUERIES + 1 + 3):  # and the audit entry
        assert len(read_csv(client.get(EXPORT, WEEK_QUERY))) == 1 + 3 + 2
    # the count for the audit entry and the entry, the service levels, the rows, their tags (one chunk)
    with django_assert_max_num_queries(3 + 2 + 3 + 3):
        rows = read_csv(client.get(EXPORT, {**WEEK_QUERY, "rows": "conversations"}))
    assert len(rows) == 300 and {row["tags"] for row in rows} == {"bulk"}
