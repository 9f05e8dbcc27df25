"""Marketing email carries List-Unsubscribe (a signed https link, and a mailto: where set) and
List-Unsubscribe-Post for one-click unsubscribe; the link works, with no cookie."""
import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from channels.delivery import send_delivery
from channels.models import DeliveryStatus, OutboxMessage
from compliance.links import read_unsubscribe_token
from compliance.models import Consent, ConsentChange

LINK = re.compile(r"<(https://omni\.example\.com/u/unsubscribe/[^>]+)>")


@pytest.fixture
def public_url(settings):
    settings.OMNI_PUBLIC_URL = "https://omni.example.com"
    settings.OMNI_UNSUBSCRIBE_MAILTO = ""
    return settings.OMNI_PUBLIC_URL


def test_marketing_email_through_ses_carries_both_unsubscribe_headers_as_moto_received_them(
        make_delivery, sesv2_client, moto_server, public_url, settings, marketing_consent):
    # given
    settings.OMNI_UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    delivery = make_delivery("email", provider="ses", purpose="marketing")

    # when
    send_delivery(delivery.pk)

    # then the message moto stored has both headers
    [sent] = moto_server.sent_raw_emails()
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = str(sent["List-Unsubscribe"])
    [url] = LINK.findall(unsubscribe)
    # and the link names this contact and this delivery; the mailto carries the same token
    token = urlsplit(url).path.rsplit("/", 1)[1]
    assert unsubscribe.endswith(f", <mailto:unsubscribe@example.com?subject=unsubscribe%20{token}>")
    link = read_unsubscribe_token(token)
    assert (link.contact.pk, link.delivery_id, link.message_id) == (delivery.contact_id, delivery.pk,
                                                                    delivery.message_id)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.content["headers"]["List-Unsubscribe"] == unsubscribe

    # when a mailbox provider posts the one-click unsubscribe, with no cookie and no CSRF token
    client = Client(enforce_csrf_checks=True)
    response = client.post(urlsplit(url).path, {"List-Unsubscribe": "One-Click"})

    # then marketing email is revoked at once, counted against this delivery
    assert response.status_code == 200
    assert not client.cookies
    consent = Consent.objects.get(contact=delivery.contact, channel="email", purpose="marketing")
    assert consent.status == "revoked"
    assert consent.last_change.source == "unsubscribe_link"
    assert consent.last_change.evidence["delivery_id"] == delivery.pk


def test_the_mailto_is_left_out_where_no_address_is_configured(make_delivery, public_url, marketing_consent):
    delivery = make_delivery("email", purpose="marketing")

    send_delivery(delivery.pk)

    outbox = OutboxMessage.objects.get(delivery=delivery)
    headers = outbox.content["headers"]
    assert LINK.fullmatch(headers["List-Unsubscribe"])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("channel, purpose", [("email", "transactional"), ("email", "informational"),
                                              ("sms", "marketing")])
def test_only_marketing_email_carries_unsubscribe_headers(make_delivery, public_url, marketing_consent, channel,
                                                          purpose):
    delivery = make_delivery(channel, purpose=purpose)

    send_delivery(delivery.pk)

    assert "headers" not in OutboxMessage.objects.get(delivery=delivery).content


def test_each_delivery_gets_its_own_link(make_delivery, public_url, marketing_consent):
    first, second = make_delivery("email", purpose="marketing"), make_delivery("email", purpose="marketing")

    send_delivery(first.pk)
    send_delivery(second.pk)

    links = [OutboxMessage.objects.get(delivery=d).content["headers"]["List-Unsubscribe"] for d in (first, second)]
    assert links[0] != links[1]
    assert not ConsentChange.objects.filter(source="unsubscribe_link").exists()
