"""Administrators keep the system running (README, "Roles"): in the admin they take rows out of the
tick's quarantine and settle uncertain deliveries, as superusers do; marketers do neither. The
change permission this takes leaves those pages read-only."""
import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from contacts.models import Contact, ContactEvent
from omni.lib.quarantine import QuarantineAdminMixin
from omni.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann(db):
    return Contact.objects.create(external_id="ann", first_name="Ann", email="ann@example.com")


@pytest.fixture
def quarantined_event(ann):
    event = ContactEvent.objects.create(contact=ann, name="signed_up", idempotency_key="ann-signed-up")
    ContactEvent.objects.filter(pk=event.pk).update(quarantined_at=timezone.now(),
                                                    quarantine_reason="ValueError: bad date")
    return event


@pytest.fixture
def uncertain_delivery(ann):
    message = Message.objects.create(
        contact=ann, purpose="transactional", source=MessageSource.API, status=MessageStatus.QUEUED,
        channel_plan=[{"channel": "email"}],
        content=[{"channel": "email", "locale": "en", "subject": "Hi", "text_body": "Hello"}])
    return Delivery.objects.create(message=message, contact=ann, channel="email", provider="sandbox",
                                   to_address=ann.email, status=DeliveryStatus.UNCERTAIN, attempts=1)


def signed_in(client, user):
    client.force_login(user)
    return client


def test_an_administrator_retries_a_quarantined_row(client, user_in, quarantined_event):
    # given an administrator on the events page
    operator = signed_in(client, user_in("operator", "Administrators"))
    url = reverse("admin:contacts_contactevent_changelist")

    # when they retry the quarantined event
    operator.post(url, {"action": "retry_quarantined", "_selected_action": [quarantined_event.pk]})

    # then the tick may claim it again, audited with their name
    quarantined_event.refresh_from_db()
    assert (quarantined_event.quarantined_at, quarantined_event.quarantine_reason) == (None, "")
    entry = AuditEntry.objects.get(action="tick.quarantine_retried")
    assert (entry.object_id, entry.actor_label) == (str(quarantined_event.pk), "operator")


def test_an_administrator_marks_an_uncertain_delivery_sent(client, user_in, uncertain_delivery):
    operator = signed_in(client, user_in("operator", "Administrators"))

    operator.post(reverse("admin:channels_delivery_changelist"),
                  {"action": "mark_sent", "_selected_action": [uncertain_delivery.pk]})

    uncertain_delivery.refresh_from_db()
    assert (uncertain_delivery.status, uncertain_delivery.message.status) == (DeliveryStatus.SENT, MessageStatus.SENT)
    entry = AuditEntry.objects.get(action="delivery.settled")
    assert (entry.object_id, entry.reason, entry.actor_label) == (str(uncertain_delivery.pk), "operator", "operator")


def test_a_marketer_neither_retries_nor_settles(client, user_in, quarantined_event, uncertain_delivery):
    # given a marketer, who sees events and deliveries
    marketer = signed_in(client, user_in("marketer", "Marketers"))
    events_url = reverse("admin:contacts_contactevent_changelist")
    deliveries_url = reverse("admin:channels_delivery_changelist")

    # then the actions are not offered
    assert 'value="retry_quarantined"' not in marketer.get(events_url).content.decode()
    deliveries_page = marketer.get(deliveries_url).content.decode()
    for action in ("retry_quarantined", "mark_sent", "mark_failed"):
        assert f'value="{action}"' not in deliveries_page

    # when they post them anyway
    marketer.post(events_url, {"action": "retry_quarantined", "_selected_action": [quarantined_event.pk]})
    marketer.post(deliveries_url, {"action": "mark_failed", "_selected_action": [uncertain_delivery.pk]})

    # then nothing moved
    quarantined_event.refresh_from_db()
    uncertain_delivery.refresh_from_db()
    assert quarantined_event.quarantined_at is not None
    assert uncertain_delivery.status == DeliveryStatus.UNCERTAIN
    assert not AuditEntry.objects.filter(action__in=["tick.quarantine_retried", "delivery.settled"]).exists()


def test_the_administrators_change_permission_leaves_a_delivery_read_only(client, user_in, uncertain_delivery):
    # given an administrator, who may settle deliveries
    operator = signed_in(client, user_in("operator", "Administrators"))
    url = reverse("admin:channels_delivery_change", args=[uncertain_delivery.pk])

    # when they open a delivery and post its form
    page = operator.get(url)
    response = operator.post(url, {"to_address": "mallory@example.com", "status": DeliveryStatus.SENT, "_save": "1"})

    # then the page shows it without a save button and the post changes nothing
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    uncertain_delivery.refresh_from_db()
    assert (uncertain_delivery.to_address, uncertain_delivery.status) == ("ann@example.com", DeliveryStatus.UNCERTAIN)


def test_administrators_may_retry_on_every_quarantining_admin_which_stays_read_only(user_in):
    # given an administrator's request
    request = RequestFactory().get("/admin/")
    request.user = user_in("operator", "Administrators")

    quarantining = [model_admin for model_admin in admin.site._registry.values()
                    if isinstance(model_admin, QuarantineAdminMixin)]
    assert len(quarantining) >= 6

    for model_admin in quarantining:
        label = model_admin.model._meta.label
        assert model_admin.has_retry_permission(request), label
        assert "retry_quarantined" in model_admin.get_actions(request), label
        assert not (model_admin.has_add_permission(request) or model_admin.has_change_permission(request)
                    or model_admin.has_delete_permission(request)), label
    delivery_actions = admin.site._registry[Delivery].get_actions(request)
    assert {"mark_sent", "mark_failed"} <= set(delivery_actions)
