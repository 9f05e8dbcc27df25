"""A send that never reached the provider is never left "sending": a template that cannot be
rendered fails it (and the message falls back where its plan allows), an infrastructure error
puts it back in the queue; only a provider call whose outcome is unknown leaves it uncertain."""
import logging

import pytest
from django.db import connection

from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from omni.models import AuditEntry
from templates.models import Template, TemplateVersion


def _variant(channel, text_body):
    return {"channel": channel, "locale": "en", "subject": "Hello" if channel == "email" else "", "preheader": "",
            "text_body": text_body, "html_body": "", "title": "", "provider_template_id": ""}


@pytest.fixture
def make_templated_delivery(contact):
    """A queued delivery on the first channel of `plan`, of a template whose SMS variant says `sms_text`."""

    def make(sms_text, *, plan=("sms", "email"), variables=None, allow_fallback=True):
        template = Template.objects.create(key=f"t{Template.objects.count()}", name="T", purpose="transactional",
                                           allow_fallback=allow_fallback)
        version = TemplateVersion.objects.create(
            template=template, number=1, purpose="transactional", allow_fallback=allow_fallback,
            variants=[_variant("sms", sms_text), _variant("email", "Your total is {{ total }}.")])
        message = Message.objects.create(
            contact=contact, purpose="transactional", template_version=version, source=MessageSource.API,
            channel_plan=[{"channel": c} for c in plan], status=MessageStatus.QUEUED, variables=variables or {},
        )
        return Delivery.objects.create(message=message, contact=contact, channel=plan[0], provider="sandbox",
                                       to_address=contact.address_for(plan[0]))

    return make


RUNTIME_ERRORS = [
    pytest.param("Average: {{ total / count }}", {"total": 10, "count": 0}, id="division-by-zero"),
    pytest.param("Hi {{ first_name + 1 }}", {}, id="type-error"),
    pytest.param("{{ range(100001) | list | length }}", {}, id="sandbox-overflow"),
]


@pytest.mark.parametrize("text, variables", RUNTIME_ERRORS)
def test_a_template_runtime_error_fails_the_send_and_the_message_ends_failed_with_its_reason(
    make_templated_delivery, text, variables, caplog,
):
    # given a message whose only channel's variant raises when rendered
    delivery = make_templated_delivery(text, plan=("sms",), variables=variables)

    # when the worker sends it
    with caplog.at_level(logging.INFO, logger="channels.delivery"):
        send_delivery(delivery.pk)

    # then nothing was sent, the delivery failed with the error, the message says why
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code, delivery.error_permanent) == (
        DeliveryStatus.FAILED, "render_error", True)
    assert delivery.error_message
    message = Message.objects.get(pk=delivery.message_id)
    assert (message.status, message.status_reason) == (MessageStatus.FAILED, "render_error:text_body")
    assert not delivery.message.deliveries.exclude(pk=delivery.pk).exists()
    assert AuditEntry.objects.filter(action="message.render_failed", object_id=str(message.pk)).count() == 1
    assert any("could not be rendered" in r.getMessage() for r in caplog.records)


def test_a_runtime_error_in_one_channels_variant_falls_back_to_the_next_channel(make_templated_delivery):
    # given SMS first, whose variant divides by zero, then email, whose variant is fine
    delivery = make_templated_delivery("Average: {{ total / count }}", variables={"total": 10, "count": 0})

    # when
    send_delivery(delivery.pk)

    # then the SMS failed and the message moved on to its email
    delivery.refresh_from_db()
    assert (delivery.status, delivery.error_code) == (DeliveryStatus.FAILED, "render_error")
    message = Message.objects.get(pk=delivery.message_id)
    assert (message.status, message.plan_step) == (MessageStatus.QUEUED, 1)
    [email] = message.deliveries.filter(plan_step=1)
    assert (email.channel, email.status) == ("email", DeliveryStatus.QUEUED)
    entry = AuditEntry.objects.get(action="message.fell_back", object_id=str(message.pk))
    assert entry.reason == "render_error:text_body"


def test_a_template_that_forbids_fallback_ends_the_message_at_a_render_error(make_templated_delivery):
    delivery = make_templated_delivery("Hi {{ first_name + 1 }}", allow_fallback=False)

    send_delivery(delivery.pk)

    message = Message.objects.get(pk=delivery.message_id)
    assert (message.status, message.status_reason) == (MessageStatus.FAILED, "render_error:text_body")
    assert message.deliveries.count() == 1


@pytest.fixture
def table_gone(transactional_db):
    """rename(table) hides a table from the application until the test ends, as a database
    that lost it (or a failed migration) would: every query on it raises a DatabaseError."""
    renamed = []

    def rename(table):
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_hidden")
        renamed.append(table)

    yield rename
    with connection.cursor() as cursor:
        for table in renamed:
            cursor.execute(f"ALTER TABLE {table}_hidden RENAME TO {table}")


def test_a_database_error_in_the_send_time_check_puts_the_delivery_back_in_the_queue(
    table_gone, make_delivery, twilio_settings, twilio_server, caplog,
):
    # given a queued SMS, and the gate's pause table unreadable when the worker re-checks it
    delivery = make_delivery("sms", provider="twilio")
    table_gone("compliance_sendingpause")

    # when the worker sends it
    with caplog.at_level(logging.INFO, logger="channels.delivery"):
        send_delivery(delivery.pk)

    # then nothing went to Twilio, and the delivery is queued again, its next attempt scheduled
    assert twilio_server.messages == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.QUEUED
    assert delivery.next_attempt_at is not None
    assert delivery.error_code == "infrastructure_error"
    assert any("back in the queue" in r.getMessage() and r.levelno >= logging.WARNING for r in caplog.records)
    assert not AuditEntry.objects.filter(action="delivery.uncertain").exists()
