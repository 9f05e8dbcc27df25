"""Compliance staff keep quiet hours and caps in the admin, read each decision's rule results,
and see on a contact's page whether it can be messaged now on each channel."""
from datetime import time

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from channels import routing
from channels.models import MessageSource
from compliance.models import Decision, FrequencyCap, QuietHours
from contacts.models import Contact
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def saved(eager_celery, django_capture_on_commit_callbacks):
    """Post a rule's form, read its policy replay (compliance/replay_admin.py) and confirm it."""
    def save(client, url, form):
        with django_capture_on_commit_callbacks(execute=True):
            replay_page = client.post(url, form)["Location"]
        replayed = client.get(replay_page)
        data = {}
        for name, value in replayed.context["form_data"]:
            data.setdefault(name, []).append(value)
        return client.post(replayed.context["confirm_url"], {**data, "_replay_run": replayed.context["run"].pk})
    return save


@pytest.fixture
def compliance_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="cora", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client.force_login(user)
    return client


def test_a_quiet_hours_rule_with_a_bad_region_is_refused_naming_it(compliance_client, saved):
    url = reverse("admin:compliance_quiethours_add")
    form = {"name": "Florida nights", "channel": "", "purpose": "", "country": "US", "start": "20:00",
            "end": "08:00", "active": "on"}

    refused = compliance_client.post(url, {**form, "region": "CA-ON"})
    added = saved(compliance_client, url, {**form, "region": "us-fl"})

    assert refused.status_code == 200 and "region" in refused.context["adminform"].form.errors
    assert added.status_code == 302
    rule = QuietHours.objects.get()
    assert (rule.region, rule.version) == ("US-FL", 1)
    assert AuditEntry.objects.filter(action="quiet_hours.created").exists()


def test_a_cap_for_some_lifecycle_stages_is_added_and_each_save_raises_its_version(compliance_client, saved):
    form = {"name": "Trials: two a day", "channel": "sms", "purpose": "marketing", "limit": "2",
            "window_seconds": "86400", "action": "defer", "lifecycle_stages": ["trial", "lead"], "active": "on"}

    saved(compliance_client, reverse("admin:compliance_frequencycap_add"), form)
    cap = FrequencyCap.objects.get()
    saved(compliance_client, reverse("admin:compliance_frequencycap_change", args=[cap.pk]), {**form, "limit": "3"})

    cap.refresh_from_db()
    assert (cap.lifecycle_stages, cap.limit, cap.version) == (["trial", "lead"], 3, 2)


def test_a_deferred_decision_shows_its_reason_and_each_rules_result(compliance_client):
    QuietHours.objects.create(name="All day", start=time(0), end=time(23, 59, 59), applies_to_transactional=True)
    FrequencyCap.objects.create(name="Ten a day", limit=10, applies_to_transactional=True)
    contact = Contact.objects.create(external_id="ann", phone="+14155550100", timezone="UTC")
    message, _ = routing.create_message(contact=contact, source=MessageSource.API, purpose="transactional",
                                        channel_plan=[{"channel": "sms"}], content=[{"channel": "sms", "text_body": "Hi"}])
    routing.dispatch(message, now=timezone.now().replace(hour=12))
    decision = Decision.objects.get(message_id=message.pk)

    page = compliance_client.get(reverse("admin:compliance_decision_change", args=[decision.pk]))

    text = page.content.decode()
    assert decision.reason == "quiet_hours"
    assert 'class="rule-quiet_hours"' in text and 'class="rule-frequency_cap"' in text
    assert "0 of 10 in 86400s" in text and "local time" in text


def test_the_contact_page_says_on_each_channel_whether_it_can_be_messaged_now(admin_client):
    contact = Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550100")

    page = admin_client.get(reverse("admin:contacts_contact_change", args=[contact.pk]))

    text = page.content.decode()
    assert 'class="reachability"' in text
    assert "no: no_marketing_consent" in text and "no: no_address" in text
    assert "yes, with an approved template (no session in 24 h)" in text
