"""Personal data stays outside the audit chain: what the chained `data` and `reason` of every
entry hold is scanned, after the flows that write audit entries, for addresses, phone numbers
and URLs. Provider texts, staff notes and usernames go to the entry's personal data."""
import io
import json
import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.utils import timezone
from twilio.request_validator import RequestValidator

from channels.delivery import send_delivery
from channels.models import Conversation, DeliveryStatus, MessageStatus
from channels.tests.ses_events import ses_event
from compliance import actions
from omni.models import AuditEntry, AuditPersonalData

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"\+\d{8,15}|\(\d{3}\)\s*\d{3}-\d{4}")
URL = re.compile(r"https?://|www\.", re.IGNORECASE)


def personal_data_in_the_chain() -> list[str]:
    found = []
    for entry in AuditEntry.objects.order_by("id"):
        chained = json.dumps(entry.data, ensure_ascii=False) + " " + entry.reason
        for kind, pattern in (("address", EMAIL), ("phone", PHONE), ("url", URL)):
            if pattern.search(chained):
                found.append(f"{entry.action} #{entry.pk}: {kind} in {chained[:200]}")
    return found


def personal_of(action: str) -> list[dict]:
    return [row.data for row in AuditPersonalData.objects.filter(entry__action=action)]


def test_the_scan_finds_personal_data_in_chained_data(db):
    audit_entry = AuditEntry.objects.create(action="test.leak", data={"note": "call +14155550100"})

    assert personal_data_in_the_chain() == [f"test.leak #{audit_entry.pk}: phone in {{\"note\": \"call +14155550100\"}} "]


def test_no_audited_flow_puts_an_address_a_phone_number_or_a_url_into_chained_data(
    demo_logins, client, admin_client, sns_signer, make_delivery, twilio_settings, twilio_server, contact, monkeypatch
):
    # the demo data
    assert "admin" in demo_logins

    # a send, then SES reporting a click on a link and a bounce with the provider's text
    email = make_delivery("email")
    send_delivery(email.pk)
    ses = make_delivery("email", provider="ses", status=DeliveryStatus.SENT, provider_message_id="ses-msg-1",
                        message_status=MessageStatus.SENT)
    for name in ("click", "bounce"):
        response = client.post("/webhooks/ses/", content_type="text/plain", data=json.dumps(
            sns_signer.notification(ses_event(name, "ses-msg-1", recipient="alice@example.com",
                                              delivery_id=ses.pk))))
        assert response.status_code == 200

    # a suppression renewed with the provider's error text and a staff note
    actions.suppress("alice@example.org", channel="sms", reason="manual", detail="asked by phone, +14155550100",
                     expires_at=timezone.now() - timedelta(hours=1))
    actions.suppress("alice@example.org", channel="sms", reason="hard_bounce", contact=contact,
                     detail="550 5.1.1 <alice@example.org>: see https://example.com/help")

    # a send whose outcome is unknown (Twilio answered after the client gave up)
    monkeypatch.setattr("channels.providers.twilio.REQUEST_TIMEOUT_SECONDS", 0.2)
    twilio_server.delay_next(0.6)
    send_delivery(make_delivery("sms", provider="twilio").pk)

    # an SMS reply coming in through Twilio's signed webhook
    params = {"MessageSid": "SMin1", "From": contact.phone, "To": "+15005550006", "Body": "Thanks!",
              "NumMedia": "0", "AccountSid": twilio_settings.TWILIO_ACCOUNT_SID}
    url = f"{twilio_settings.OMNI_PUBLIC_URL}/webhooks/twilio/inbound/"
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    assert client.post("/webhooks/twilio/inbound/", data=params, headers={"X-Twilio-Signature": signature}
                       ).status_code < 300

    # an agent assigning a conversation
    agent = get_user_model().objects.create_user(username="agent.smith@example.com", password="x", is_staff=True)
    agent.groups.add(Group.objects.get(name="Support agents"))
    conversation = Conversation.objects.get(contact=contact, channel="sms")  # the reply opened it
    response = admin_client.post(f"/admin/channels/conversation/{conversation.pk}/change/",
                                 {"status": "open", "assignee": agent.pk,
                                  "inbound_messages-TOTAL_FORMS": "0", "inbound_messages-INITIAL_FORMS": "0"})
    assert response.status_code == 302
    call_command("seal_audit", stdout=io.StringIO())

    # then the chain holds none of it, and the personal data sits beside it
    assert personal_data_in_the_chain() == []
    [changed] = AuditEntry.objects.filter(action="conversation.assigned")
    assert "agent.smith" not in json.dumps(changed.data) and changed.data["assignee_id"] == agent.pk
    assert personal_of("conversation.assigned") == [{"assignee": "agent.smith@example.com"}]
    assert [row["detail"][:7] for row in personal_of("delivery.clicked")] == ["http://"]
    assert all("error" not in entry.data for entry in AuditEntry.objects.filter(action="delivery.uncertain"))
    assert [set(row) for row in personal_of("delivery.uncertain")] == [{"error"}]
    renewed = personal_of("suppression.renewed")
    assert renewed == [{"detail": "550 5.1.1 <alice@example.org>: see https://example.com/help",
                        "previous_detail": "asked by phone, +14155550100"}]
    call_command("verify_audit", stdout=io.StringIO())
