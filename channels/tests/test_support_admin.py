"""Support settings in the admin: business hours with openings and holidays, service levels,
queues, agent status, tags, escalation rules, automated responses and saved replies; each form
says in words what is wrong; list pages with many rows take a fixed number of queries."""
from datetime import UTC, date, datetime, time

import pytest
from django.urls import reverse

from channels.models import (
    AgentStatus,
    AutoResponse,
    BusinessHours,
    Conversation,
    ConversationTag,
    EscalationRule,
    Holiday,
    OpeningHours,
    SavedReply,
    ServiceLevel,
    SupportQueue,
)
from contacts.models import Contact
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db


def errors_of(response) -> dict:
    assert response.status_code == 200, "the form was accepted"
    return {name: " ".join(messages) for name, messages in response.context["adminform"].form.errors.items()}


def inline_management(prefix: str, total: int) -> dict:
    return {f"{prefix}-TOTAL_FORMS": str(total), f"{prefix}-INITIAL_FORMS": "0", f"{prefix}-MIN_NUM_FORMS": "0",
            f"{prefix}-MAX_NUM_FORMS": "1000"}


def business_hours_form(openings: list[tuple[str, str, str]], holidays=(), timezone="Europe/London") -> dict:
    form = {"name": "Office", "timezone": timezone, **inline_management("openings", len(openings)),
            **inline_management("holidays", len(holidays))}
    for i, (weekday, opens, closes) in enumerate(openings):
        form.update({f"openings-{i}-weekday": weekday, f"openings-{i}-opens": opens, f"openings-{i}-closes": closes})
    for i, (day, name) in enumerate(holidays):
        form.update({f"holidays-{i}-date": day, f"holidays-{i}-name": name})
    return form


def formset_errors(response) -> str:
    return " ".join(str(formset.non_form_errors()) + str(formset.errors)
                    for formset in (inline.formset for inline in response.context["inline_admin_formsets"]))


def test_business_hours_are_added_with_openings_and_holidays_and_audited(admin_client):
    response = admin_client.post(reverse("admin:channels_businesshours_add"), business_hours_form(
        [("0", "09:00", "17:00"), ("1", "09:00", "12:00"), ("1", "13:00", "17:00")],
        holidays=[("2026-12-25", "Christmas")]))

    assert response.status_code == 302, formset_errors(response)
    hours = BusinessHours.objects.get()
    assert [str(o) for o in hours.openings.all()] == ["Monday 09:00-17:00", "Tuesday 09:00-12:00",
                                                       "Tuesday 13:00-17:00"]
    assert list(hours.holidays.values_list("date", flat=True)) == [date(2026, 12, 25)]
    monday_at_ten_in_london = datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert hours.schedule().is_open(monday_at_ten_in_london)
    assert AuditEntry.objects.filter(action="business_hours.created").exists()


@pytest.mark.parametrize("openings, says", [
    ([("0", "17:00", "09:00")], "Closes must be later than opens"),
    ([("0", "09:00", "13:00"), ("0", "12:00", "17:00")], "do not fit together: Monday: 09:00-13:00 overlaps"),
    ([], "Give at least one opening"),
])
def test_openings_that_cannot_work_are_refused_saying_why(admin_client, openings, says):
    response = admin_client.post(reverse("admin:channels_businesshours_add"), business_hours_form(openings))

    assert response.status_code == 200
    assert says in formset_errors(response)
    assert not BusinessHours.objects.exists()


def test_an_unknown_time_zone_is_refused(admin_client):
    response = admin_client.post(reverse("admin:channels_businesshours_add"),
                                 business_hours_form([("0", "09:00", "17:00")], timezone="Mars/Olympus"))

    assert "timezone" in errors_of(response)


def test_an_after_hours_reply_needs_business_hours_and_known_variables(admin_client):
    url = reverse("admin:channels_servicelevel_add")
    form = {"channel": "sms", "business_hours": "", "first_response_minutes": "60", "resolution_minutes": "1440",
            "after_hours_reply": "Closed. We answer by {{ response_due }}.", "satisfaction_question": ""}

    without_hours = errors_of(admin_client.post(url, form))
    hours = BusinessHours.objects.create(name="Office", timezone="UTC")
    OpeningHours.objects.create(business_hours=hours, weekday=0, opens=time(9), closes=time(17))
    unknown = errors_of(admin_client.post(url, {**form, "business_hours": hours.pk,
                                                "satisfaction_question": "Rate {{ agent_name }} 1-5"}))
    added = admin_client.post(url, {**form, "business_hours": hours.pk,
                                    "satisfaction_question": "How did we do, {{ first_name }}? 1-5"})

    assert "needs business hours" in without_hours["after_hours_reply"]
    assert "'agent_name' is undefined" in unknown["satisfaction_question"]
    assert "after_hours_reply" not in unknown  # {{ response_due }} is known there
    assert added.status_code == 302 and ServiceLevel.objects.get().business_hours == hours


def test_a_service_level_longer_than_ninety_days_is_refused(admin_client):
    url = reverse("admin:channels_servicelevel_add")
    form = {"channel": "sms", "business_hours": "", "first_response_minutes": "2000000000",
            "resolution_minutes": "129601", "after_hours_reply": "", "satisfaction_question": ""}

    errors = errors_of(admin_client.post(url, form))

    assert "less than or equal to 129600" in errors["first_response_minutes"]
    assert "less than or equal to 129600" in errors["resolution_minutes"]
    assert not ServiceLevel.objects.exists()


def test_escalation_rules_say_what_is_missing(admin_client):
    queue = SupportQueue.objects.create(name="Complaints")
    url = reverse("admin:channels_escalationrule_add")
    form = {"name": "Human", "active": "on", "trigger": "phrase", "phrases": " \n ", "threshold": "2",
            "queue": queue.pk, "acknowledgement": "We answer by {{ response_due }}, {{ contact.first_name }}.",
            "position": "0"}

    no_phrases = errors_of(admin_client.post(url, form))
    bad_ack = errors_of(admin_client.post(url, {**form, "phrases": "human", "acknowledgement": "By {{ due }}"}))
    not_repeated = errors_of(admin_client.post(url, {**form, "trigger": "repeated_message", "threshold": "1"}))
    added = admin_client.post(url, {**form, "phrases": "human\nmanager"})

    assert "Give at least one phrase" in no_phrases["phrases"]
    assert "'due' is undefined" in bad_ack["acknowledgement"] and "{{ response_due }}" in bad_ack["acknowledgement"]
    assert "At least 2" in not_repeated["threshold"]
    assert added.status_code == 302
    assert EscalationRule.objects.get().phrases == "human\nmanager"
    assert AuditEntry.objects.filter(action="escalation_rule.created").exists()


def test_automated_responses_and_saved_replies_check_their_texts(admin_client):
    response = errors_of(admin_client.post(reverse("admin:channels_autoresponse_add"), {
        "name": "Hours", "active": "on", "phrases": "   ", "body": "Open {{ hours }}", "channel": "", "position": "0"}))
    saved = errors_of(admin_client.post(reverse("admin:channels_savedreply_add"), {
        "title": "Thanks", "body": "Thanks {{ first_name }}, by {{ response_due }}", "channel": ""}))
    syntax = errors_of(admin_client.post(reverse("admin:channels_savedreply_add"), {
        "title": "Thanks", "body": "Thanks {{ first_name", "channel": ""}))
    attribute = admin_client.post(reverse("admin:channels_savedreply_add"), {
        "title": "Plan", "body": "You are on {{ contact.attributes.plan }}.", "channel": "sms"})

    assert "Give at least one phrase" in response["phrases"] and "'hours' is undefined" in response["body"]
    assert "'response_due' is undefined" in saved["body"]  # only automated texts know when a person answers
    assert "body" in syntax
    assert attribute.status_code == 302 and SavedReply.objects.get().channel == "sms"


def test_a_conversation_is_assigned_only_to_those_who_may_work_conversations(admin_client, agents, admin_user):
    from django.contrib.auth.models import Group

    ann, bea, cy = agents
    ann.groups.add(Group.objects.get(name="Support agents"))
    cy.groups.add(Group.objects.get(name="Marketers"))
    conversation = Conversation.objects.create(contact=Contact.objects.create(external_id="c1"), channel="sms")

    page = admin_client.get(reverse("admin:channels_conversation_change", args=[conversation.pk]))

    offered = set(page.context["adminform"].form.fields["assignee"].queryset)
    assert offered == {ann, admin_user}  # not Cy (marketing), nor Bea (staff with no support role)


def test_one_default_queue_and_agents_are_staff(admin_client, agents, django_user_model):
    url = reverse("admin:channels_supportqueue_add")
    customer = django_user_model.objects.create_user("not-staff")
    form = {"name": "General", "assignment": "round_robin", "max_open_per_agent": "5",
            "agents": [a.pk for a in agents], "is_default": "on"}

    assert admin_client.post(url, form).status_code == 302
    second = errors_of(admin_client.post(url, {**form, "name": "Other"}))
    not_staff = errors_of(admin_client.post(url, {**form, "name": "Other", "is_default": "", "agents": [customer.pk]}))
    zero = errors_of(admin_client.post(url, {**form, "name": "Other", "is_default": "", "max_open_per_agent": "0"}))

    assert "“General” is the default queue already" in second["is_default"]
    assert "agents" in not_staff
    assert "At least 1" in zero["max_open_per_agent"]
    queue = SupportQueue.objects.get()
    assert list(queue.agents.order_by("pk")) == agents
    customer = Contact.objects.create(external_id="c1", phone="+14155550100")
    Conversation.objects.create(contact=customer, channel="sms", queue=queue)
    listed = admin_client.get(reverse("admin:channels_supportqueue_changelist")).context["cl"].result_list
    assert [(q.agent_count, q.unassigned) for q in listed] == [(3, 1)]


def test_marking_an_agent_available_in_the_admin_goes_through_set_available(admin_client, agents):
    admin_client.post(reverse("admin:channels_agentstatus_add"), {"agent": agents[0].pk, "available": "on"})
    status = AgentStatus.objects.get()
    admin_client.post(reverse("admin:channels_agentstatus_changelist"),
                      {"action": "mark_away", "_selected_action": [status.pk]})

    status.refresh_from_db()
    assert status.available is False
    assert [e.reason for e in AuditEntry.objects.filter(action="agent.availability_changed").order_by("pk")] == [
        "available", "away"]


# --- list pages with many rows ------------------------------------------------------------------

def _fill(model, n: int, agents) -> None:
    start = model.objects.count()
    for i in range(start, start + n):
        if model is BusinessHours:
            hours = BusinessHours.objects.create(name=f"Hours {i}", timezone="UTC")
            OpeningHours.objects.create(business_hours=hours, weekday=i % 7, opens=time(9), closes=time(17))
            Holiday.objects.create(business_hours=hours, date=date(2026, 12, 25))
        elif model is ServiceLevel:
            hours = BusinessHours.objects.create(name=f"For level {i}", timezone="UTC")
            channel = ["email", "sms", "whatsapp", "rcs", "push"][i % 5]
            ServiceLevel.objects.filter(channel=channel).delete()
            ServiceLevel.objects.create(channel=channel, business_hours=hours)
        elif model is SupportQueue:
            queue = SupportQueue.objects.create(name=f"Queue {i}")
            queue.agents.set(agents)
        elif model is AgentStatus:
            from django.contrib.auth import get_user_model
            user = get_user_model().objects.create_user(f"agent{i}", is_staff=True)
            AgentStatus.objects.create(agent=user, available=bool(i % 2))
        elif model is ConversationTag:
            ConversationTag.objects.create(name=f"tag {i}")
        elif model is EscalationRule:
            queue = SupportQueue.objects.create(name=f"For rule {i}")
            EscalationRule.objects.create(name=f"Rule {i}", trigger="phrase", phrases="human", queue=queue, position=i)
        elif model is AutoResponse:
            AutoResponse.objects.create(name=f"Response {i}", phrases="hours", body="9 to 5", position=i)
        elif model is SavedReply:
            SavedReply.objects.create(title=f"Reply {i}", body="Thanks {{ first_name }}")


@pytest.mark.parametrize("model", [BusinessHours, ServiceLevel, SupportQueue, AgentStatus, ConversationTag,
                                   EscalationRule, AutoResponse, SavedReply], ids=lambda m: m.__name__)
def test_a_list_page_takes_as_many_queries_for_forty_rows_as_for_three(admin_client, agents, model,
                                                                         django_assert_max_num_queries):
    url = reverse(f"admin:channels_{model._meta.model_name}_changelist")
    rows = 3 if model is not ServiceLevel else 2
    _fill(model, rows, agents)
    admin_client.get(url)  # the session's first page reads what later pages keep
    with django_assert_max_num_queries(100) as few:
        assert admin_client.get(url).status_code == 200

    _fill(model, 37 if model is not ServiceLevel else 3, agents)
    with django_assert_max_num_queries(len(few.captured_queries)) as many:
        page = admin_client.get(url)

    assert page.status_code == 200
    assert len(many.captured_queries) <= 14, [q["sql"][:100] for q in many.captured_queries]


def test_an_agent_marks_only_themselves(client, agents):
    from django.contrib.auth.models import Permission

    # given Ann may view and change agent statuses (the role's permissions), and Bea is available
    ann, bea = agents[0], agents[1]
    ann.user_permissions.add(*Permission.objects.filter(codename__in=["view_agentstatus", "change_agentstatus",
                                                                       "add_agentstatus"]))
    client.force_login(ann)
    bea_status = AgentStatus.objects.create(agent=bea, available=True)

    # when she marks herself available, and tries to mark Bea away
    mine = client.post(reverse("admin:channels_agentstatus_add"), {"agent": ann.pk, "available": "on"})
    for_bea = client.post(reverse("admin:channels_agentstatus_add"), {"agent": bea.pk, "available": ""})
    client.post(reverse("admin:channels_agentstatus_changelist"),
                {"action": "mark_away", "_selected_action": [bea_status.pk]})

    # then only her own status changed
    assert mine.status_code == 302 and AgentStatus.objects.get(agent=ann).available
    assert "agent" in errors_of(for_bea)
    bea_status.refresh_from_db()
    assert bea_status.available
    assert client.get(reverse("admin:channels_agentstatus_change", args=[bea_status.pk])).status_code == 200
    assert b'name="available"' not in client.get(
        reverse("admin:channels_agentstatus_change", args=[bea_status.pk])).content
