"""Default channel plans by purpose and urgency: seeded, and edited in the admin without JSON."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from channels.models import DefaultChannelPlan
from channels.plans import channel_plan_problems
from omni import audit
from omni.choices import Purpose, Urgency

pytestmark = pytest.mark.django_db


def change_url(plan):
    return reverse("admin:channels_defaultchannelplan_change", args=[plan.pk])


def plan_form(purpose="transactional", urgency="high", *steps):
    """The admin form's fields for a plan of `steps`: (channel, seconds or "", unless or "")."""
    data = {"purpose": purpose, "urgency": urgency}
    for number in range(1, 6):
        channel, after, unless = steps[number - 1] if number <= len(steps) else ("", "", "")
        data.update({f"channel_{number}": channel, f"fallback_after_{number}": after,
                     f"fallback_unless_{number}": unless})
    return data


def test_every_purpose_and_urgency_has_a_valid_seeded_plan():
    plans = DefaultChannelPlan.plans()

    assert set(plans) == {(p, u) for p in Purpose.values for u in Urgency.values}
    assert all(channel_plan_problems(plan) == [] for plan in plans.values())
    assert [e["channel"] for e in plans[(Purpose.TRANSACTIONAL, Urgency.HIGH)]] == ["sms", "email"]
    assert [e["channel"] for e in plans[(Purpose.MARKETING, Urgency.LOW)]] == ["email"]


def test_an_administrator_orders_the_channels_with_selects_and_the_change_is_audited(admin_client):
    plan = DefaultChannelPlan.objects.get(purpose="transactional", urgency="high")
    page = admin_client.get(change_url(plan)).content.decode()
    assert 'name="channel_1"' in page and "<textarea" not in page

    response = admin_client.post(change_url(plan), plan_form(
        "transactional", "high", ("whatsapp", 120, "delivered"), ("sms", 300, ""), ("email", "", "")))

    assert response.status_code == 302, response.context["adminform"].form.errors
    plan.refresh_from_db()
    assert plan.channel_plan == [
        {"channel": "whatsapp", "fallback_after_seconds": 120, "fallback_unless": "delivered"},
        {"channel": "sms", "fallback_after_seconds": 300}, {"channel": "email"}]
    entry = audit.for_object(plan).get(action="default_channel_plan.changed")
    assert entry.data["channel_plan"] == plan.channel_plan


def test_the_form_starts_from_the_stored_plan(admin_client):
    plan = DefaultChannelPlan.objects.get(purpose="informational", urgency="high")

    form = admin_client.get(change_url(plan)).context["adminform"].form

    assert [form.initial.get(f"channel_{n}") for n in range(1, 5)] == ["push", "sms", "email", None]
    assert form.initial["fallback_after_1"] == 600 and form.initial["fallback_unless_1"] == "delivered"


@pytest.mark.parametrize("steps, field, message", [
    ((("sms", "", ""), ("sms", "", "")), "channel_2", "sms is already in the plan."),
    ((("sms", "", ""), ("", "", ""), ("email", "", "")), "channel_3", "Choose channel 2 first"),
    ((("sms", 300, ""),), "fallback_after_1", "The last channel has no next one to move on to."),
    ((("", "", ""),), "channel_1", "This field is required."),
    ((("sms", "", ""), ("", 60, "")), "channel_2", "Choose a channel for this step"),
])
def test_a_broken_plan_is_refused_naming_the_field_and_nothing_is_saved(admin_client, steps, field, message):
    plan = DefaultChannelPlan.objects.get(purpose="transactional", urgency="high")
    before = plan.channel_plan

    response = admin_client.post(change_url(plan), plan_form("transactional", "high", *steps))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors.get(field, [])), errors
    plan.refresh_from_db()
    assert plan.channel_plan == before


def test_a_second_plan_for_the_same_purpose_and_urgency_is_refused(admin_client):
    response = admin_client.post(reverse("admin:channels_defaultchannelplan_add"),
                                 plan_form("marketing", "low", ("email", "", "")))

    assert response.status_code == 200
    assert DefaultChannelPlan.objects.filter(purpose="marketing", urgency="low").count() == 1


def test_marketers_read_the_plans_in_words_and_cannot_change_them(client, django_user_model):
    marketer = django_user_model.objects.create_user(username="marketer", password="not-used", is_staff=True)
    marketer.groups.add(Group.objects.get(name="Marketers"))
    client.force_login(marketer)
    plan = DefaultChannelPlan.objects.get(purpose="transactional", urgency="high")

    listing = client.get(reverse("admin:channels_defaultchannelplan_changelist")).content.decode()
    page = client.get(change_url(plan))
    refused = client.post(change_url(plan), plan_form("transactional", "high", ("email", "", "")))

    assert "sms (after 300 s unless delivered), then email" in listing
    assert page.status_code == 200 and "sms (after 300 s unless delivered), then email" in page.content.decode()
    assert refused.status_code == 403
