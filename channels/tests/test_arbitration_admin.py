"""Arbitration rules in the admin: windows as a number and a unit, no JSON; administrators set
them (audited), marketers and compliance read them; a decision of arbitration shows who won."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from channels import routing
from channels.models import ArbitrationRule, MessageSource
from compliance.models import Decision
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_in(django_user_model):
    def make(group):
        user = django_user_model.objects.create_user(username=group.lower().replace(" ", "-"), password="not-used",
                                                     is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        return user
    return make


@pytest.fixture
def marketing_rule(db):
    rule, _ = ArbitrationRule.objects.update_or_create(purpose="marketing", defaults={
        "intent_window_seconds": 7 * 86400, "collision_window_seconds": 0, "action": "defer"})
    return rule


def test_an_administrator_sets_the_windows_as_a_number_and_a_unit_and_the_change_is_audited(
        client, staff_in, marketing_rule):
    client.force_login(staff_in("Administrators"))
    url = reverse("admin:channels_arbitrationrule_change", args=[marketing_rule.pk])
    version = marketing_rule.version

    page = client.get(url).content.decode()
    response = client.post(url, {"purpose": "marketing", "intent_window_seconds_0": "3",
                                 "intent_window_seconds_1": "days", "collision_window_seconds_0": "90",
                                 "collision_window_seconds_1": "minutes", "action": "drop"})

    assert 'name="intent_window_seconds_0"' in page and 'value="7"' in page
    assert "0: never checked" in page
    assert response.status_code == 302, response.context["adminform"].form.errors
    marketing_rule.refresh_from_db()
    assert (marketing_rule.intent_window_seconds, marketing_rule.collision_window_seconds, marketing_rule.action,
            marketing_rule.version) == (3 * 86400, 90 * 60, "drop", version + 1)
    entry = AuditEntry.objects.get(action="arbitration_rule.changed")
    assert set(entry.data["changed"]) == {"intent_window_seconds", "collision_window_seconds", "action"}


def test_a_negative_window_is_refused_in_words(client, staff_in, marketing_rule):
    client.force_login(staff_in("Administrators"))
    version = marketing_rule.version

    response = client.post(reverse("admin:channels_arbitrationrule_change", args=[marketing_rule.pk]),
                           {"purpose": "marketing", "intent_window_seconds_0": "-1",
                            "intent_window_seconds_1": "hours", "collision_window_seconds_0": "0",
                            "collision_window_seconds_1": "hours", "action": "defer"})

    assert response.status_code == 200
    assert "intent_window_seconds" in response.context["adminform"].form.errors
    marketing_rule.refresh_from_db()
    assert marketing_rule.version == version


def test_marketers_and_compliance_read_the_rules_but_cannot_change_them(client, staff_in, marketing_rule,
                                                                       django_assert_max_num_queries):
    version = marketing_rule.version
    for role in ("Marketers", "Compliance"):
        client.force_login(staff_in(role))
        url = reverse("admin:channels_arbitrationrule_change", args=[marketing_rule.pk])

        with django_assert_max_num_queries(20):
            listing = client.get(reverse("admin:channels_arbitrationrule_changelist"))
        refused = client.post(url, {"purpose": "marketing", "intent_window_seconds_0": "1",
                                    "intent_window_seconds_1": "hours", "collision_window_seconds_0": "0",
                                    "collision_window_seconds_1": "hours", "action": "drop"})

        assert listing.status_code == 200 and "7 days" in listing.content.decode()
        assert refused.status_code == 403
    marketing_rule.refresh_from_db()
    assert marketing_rule.version == version


def test_the_decision_page_of_a_displaced_message_names_the_rule_and_the_winner(admin_client, contact):
    rule, _ = ArbitrationRule.objects.update_or_create(purpose="informational", defaults={
        "intent_window_seconds": 3600})
    messages = [routing.create_message(
        contact=contact, source=source, purpose="informational", channel_plan=[{"channel": "sms"}],
        content=[{"channel": "sms", "text_body": "Shipped"}], intent_key="order:1:shipped")[0]
        for source in (MessageSource.JOURNEY, MessageSource.API)]
    routing.dispatch_many(messages)
    decision = Decision.objects.get(message_id=messages[1].pk)

    page = admin_client.get(reverse("admin:compliance_decision_change", args=[decision.pk])).content.decode()

    assert f"displaced by message {messages[0].pk}" in page
    assert reverse("admin:channels_arbitrationrule_change", args=[rule.pk]) in page
    assert "informational from journey" in page
    assert "rule-consent" not in page  # the gate's rules were not asked
