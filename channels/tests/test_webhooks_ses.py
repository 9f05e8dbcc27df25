import json

import pytest
from django.urls import reverse
from django.utils import timezone

from channels.models import DeliveryEvent, DeliveryStatus, EventType, MessageStatus
from channels.tests.ses_events import renamed, ses_event
from channels.webhooks import sns
from compliance.models import Suppression
from omni.models import AuditEntry

SES_URL = "/webhooks/ses/"


def post(client, envelope):
    return client.post(SES_URL, data=json.dumps(envelope), content_type="text/plain")


@pytest.fixture
def ses_delivery(make_delivery):
    """An email SES accepted, with the SES message id "ses-msg-1"."""
    return make_delivery("email", provider="ses", status=DeliveryStatus.SENT, provider_message_id="ses-msg-1",
                         message_status=MessageStatus.SENT)


@pytest.mark.parametrize("signature_version", [1, 2])
def test_a_signed_delivery_notification_marks_the_email_delivered(client, sns_signer, ses_delivery, signature_version):
    # given
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"), version=signature_version)

    # when
    response = post(client, envelope)

    # then
    assert response.status_code == 200
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.DELIVERED
    event = DeliveryEvent.objects.get()
    assert (event.provider, event.delivery) == ("ses", ses_delivery)
    assert event.raw["sns"]["MessageId"] == envelope["MessageId"]
    assert event.raw["event"]["eventType"] == "Delivery"


def test_a_forged_notification_is_refused_and_nothing_is_stored(client, sns_signer, ses_delivery):
    # given a genuine envelope whose message was changed after signing
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"))
    envelope["Message"] = json.dumps(ses_event("bounce", "ses-msg-1"))

    response = post(client, envelope)

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()
    assert not Suppression.objects.exists()
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.SENT


def test_a_certificate_outside_the_trusted_hosts_is_never_fetched(client, sns_signer, settings, db):
    settings.SNS_CERT_URL_REGEX = r"^https://sns\.[a-z0-9-]+\.amazonaws\.com/"
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"))

    response = post(client, envelope)

    assert response.status_code == 403
    assert sns_signer.requests == []
    assert not DeliveryEvent.objects.exists()


def test_an_unsigned_notification_is_refused(client, sns_signer, db):
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"))
    del envelope["Signature"]

    assert post(client, envelope).status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_a_repeated_notification_is_counted_once(client, sns_signer, ses_delivery):
    envelope = sns_signer.notification(ses_event("open", "ses-msg-1"))

    responses = [post(client, envelope), post(client, envelope)]

    assert [response.status_code for response in responses] == [200, 200]
    assert DeliveryEvent.objects.count() == 1
    assert AuditEntry.objects.filter(action="delivery.opened").count() == 1


def test_a_notification_about_an_unknown_message_is_kept_and_answered_200(client, sns_signer, db):
    envelope = sns_signer.notification(ses_event("delivery", "not-ours"))

    response = post(client, envelope)

    assert response.status_code == 200
    event = DeliveryEvent.objects.get()
    assert event.delivery is None
    assert event.provider_message_id == "not-ours"


def test_a_permanent_bounce_suppresses_the_address_and_fails_the_message(client, sns_signer, ses_delivery, tick):
    response = post(client, sns_signer.notification(ses_event("bounce", "ses-msg-1")))
    tick()

    assert response.status_code == 200
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.BOUNCED
    assert ses_delivery.message.status == MessageStatus.FAILED
    event = DeliveryEvent.objects.get()
    assert (event.event_type, event.permanent, event.detail) == (EventType.BOUNCED, True, "hard: General")
    assert Suppression.objects.get(address="alice@example.com").reason == "hard_bounce"


def test_a_transient_bounce_is_a_soft_bounce(client, sns_signer, ses_delivery):
    post(client, sns_signer.notification(ses_event("bounce", "ses-msg-1", bounceType="Transient",
                                                   bounceSubType="MailboxFull")))

    event = DeliveryEvent.objects.get()
    assert (event.event_type, event.permanent, event.detail) == (EventType.BOUNCED, False, "soft: MailboxFull")
    assert not Suppression.objects.exists()


def test_an_identity_notification_without_event_publishing_is_understood(client, sns_signer, ses_delivery):
    post(client, sns_signer.notification(ses_event("identity_bounce", "ses-msg-1")))

    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.BOUNCED


def test_a_click_records_engagement(client, sns_signer, ses_delivery):
    post(client, sns_signer.notification(ses_event("click", "ses-msg-1")))

    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.CLICKED
    assert ses_delivery.message.status == MessageStatus.ENGAGED
    assert DeliveryEvent.objects.get().detail.startswith("http://docs.aws.amazon.com/")


def test_an_unknown_ses_event_type_is_stored_as_unknown(client, sns_signer, ses_delivery):
    response = post(client, sns_signer.notification(renamed(ses_event("send", "ses-msg-1"), "Teleport")))

    assert response.status_code == 200
    event = DeliveryEvent.objects.get()
    assert (event.event_type, event.delivery) == (EventType.UNKNOWN, ses_delivery)
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.SENT


def test_a_plain_text_notification_is_stored_as_unknown(client, sns_signer, db):
    message = "Successfully validated SNS topic for Amazon SES event publishing."

    response = post(client, sns_signer.notification(message))

    assert response.status_code == 200
    assert DeliveryEvent.objects.get().event_type == EventType.UNKNOWN


def test_an_event_links_by_omni_tag_a_delivery_whose_send_was_never_recorded(client, sns_signer, make_delivery):
    # given a worker died after SES accepted the email
    delivery = make_delivery("email", provider="ses", status=DeliveryStatus.UNCERTAIN)

    post(client, sns_signer.notification(ses_event("delivery", "ses-msg-7", delivery_id=delivery.pk)))

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.provider_message_id == "ses-msg-7"


def test_a_topic_not_in_the_accepted_list_is_refused(client, sns_signer, settings, db):
    settings.SNS_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:omni-ses"]

    response = post(client, sns_signer.notification(ses_event("delivery", "ses-msg-1"),
                                                    topic_arn="arn:aws:sns:us-east-1:999999999999:other"))

    assert response.status_code == 403
    assert not DeliveryEvent.objects.exists()


def test_malformed_json_is_a_bad_request(client, sns_signer, db):
    response = client.post(SES_URL, data="{not json", content_type="text/plain")

    assert response.status_code == 400


def test_a_json_body_that_is_not_an_sns_message_is_a_bad_request(client, sns_signer, db):
    response = client.post(SES_URL, data=json.dumps({"Type": "Notification"}), content_type="text/plain")

    assert response.status_code == 400


def test_an_oversized_body_is_refused_before_parsing(client, sns_signer, settings, db):
    settings.OMNI_MAX_BODY_BYTES = 1024
    envelope = sns_signer.notification({"padding": "x" * 2048})

    response = post(client, envelope)

    assert response.status_code == 413
    assert sns_signer.requests == []


def test_a_get_is_not_allowed(client, db):
    assert client.get(SES_URL).status_code == 405


def test_a_subscription_confirmation_visits_the_subscribe_url(client, sns_signer, settings, db):
    settings.SNS_SUBSCRIBE_URL_REGEX = sns_signer.cert_url_regex
    envelope = sns_signer.subscription_confirmation()

    response = post(client, envelope)

    assert response.status_code == 200
    assert [request.path for request in sns_signer.requests if request.path != sns_signer.CERT_PATH] == [
        "/confirm-subscription"
    ]
    assert AuditEntry.objects.filter(action="webhook.sns_subscription_confirmed").exists()


def test_a_subscribe_url_outside_amazon_is_never_visited(client, sns_signer, db):
    envelope = sns_signer.subscription_confirmation(subscribe_url="https://attacker.example.com/confirm")

    response = post(client, envelope)

    assert response.status_code == 403
    assert all(request.path == sns_signer.CERT_PATH for request in sns_signer.requests)


def test_an_unreachable_signing_certificate_answers_503_so_sns_retries(client, sns_signer, settings, db):
    settings.SNS_CERT_URL_REGEX = r"^http://127\.0\.0\.1:9/"
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1"))
    envelope["SigningCertURL"] = "http://127.0.0.1:9/SimpleNotificationService-gone.pem"

    response = post(client, envelope)

    assert response.status_code == 503
    assert not DeliveryEvent.objects.exists()


def test_an_ses_event_time_of_year_one_falls_back_to_the_time_of_receipt(client, admin_client, sns_signer,
                                                                           ses_delivery):
    # given an authentic notification whose SES event says it happened in year 1
    envelope = sns_signer.notification(ses_event("delivery", "ses-msg-1", timestamp="0001-01-01T00:00:00+14:00"))
    before = timezone.now()

    # when
    response = post(client, envelope)

    # then it is stored at the time it was received: refusing it would make SNS resend the
    # same signed date forever
    assert response.status_code == 200
    event = DeliveryEvent.objects.get()
    assert before <= event.occurred_at <= timezone.now()
    ses_delivery.refresh_from_db()
    assert ses_delivery.status == DeliveryStatus.DELIVERED
    assert before <= ses_delivery.delivered_at <= timezone.now()
    assert admin_client.get(reverse("admin:channels_deliveryevent_changelist")).status_code == 200


def test_without_a_topic_list_a_bounce_for_an_unknown_message_suppresses_nothing(client, sns_signer, settings, db):
    # given no accepted topics (development): any topic whose signature verifies gets in
    settings.SNS_TOPIC_ARNS = []

    # when a hard bounce arrives about a message Omni never sent
    response = post(client, sns_signer.notification(ses_event("bounce", "not-ours", "victim@example.com"),
                                                    topic_arn="arn:aws:sns:us-east-1:999999999999:someone-else"))

    # then it is kept for the record, but nobody's address is suppressed on its word
    assert response.status_code == 200
    assert DeliveryEvent.objects.get().delivery is None
    assert not Suppression.objects.exists()


def test_with_a_topic_list_a_bounce_for_an_unknown_message_still_suppresses(client, sns_signer, settings, db):
    settings.SNS_TOPIC_ARNS = ["arn:aws:sns:us-east-1:123456789012:ses-events"]

    post(client, sns_signer.notification(ses_event("bounce", "not-ours", "gone@example.com")))

    assert Suppression.objects.get().address == "gone@example.com"


def several_recipients(event: dict, key: str, addresses: list[str]) -> dict:
    detail = event["bounce"] if key == "bouncedRecipients" else event["complaint"]
    detail[key] = [{**detail[key][0], "emailAddress": address} for address in addresses]
    event["mail"]["destination"] = addresses
    return event


@pytest.mark.parametrize("name, key", [("bounce", "bouncedRecipients"), ("complaint", "complainedRecipients")])
def test_a_bounce_or_complaint_with_several_recipients_suppresses_each(client, sns_signer, ses_delivery, name, key):
    addresses = ["alice@example.com", "bob@example.com", "carol@example.com"]
    event = several_recipients(ses_event(name, "ses-msg-1"), key, addresses)

    response = post(client, sns_signer.notification(event))

    assert response.status_code == 200
    assert sorted(Suppression.objects.values_list("address", flat=True)) == addresses


def test_the_same_ses_event_in_two_sns_envelopes_is_applied_once(client, sns_signer, ses_delivery):
    # given one SES bounce that SNS delivers twice, each time under a new SNS MessageId
    event = ses_event("bounce", "ses-msg-1")
    first, second = sns_signer.notification(event), sns_signer.notification(event)
    assert first["MessageId"] != second["MessageId"]

    responses = [post(client, first), post(client, second)]

    assert [response.status_code for response in responses] == [200, 200]
    assert DeliveryEvent.objects.count() == 1
    assert AuditEntry.objects.filter(action="delivery.bounced").count() == 1
    assert AuditEntry.objects.filter(action="suppression.added").count() == 1


def test_two_different_ses_events_about_one_message_are_both_kept(client, sns_signer, ses_delivery):
    post(client, sns_signer.notification(ses_event("delivery", "ses-msg-1")))
    post(client, sns_signer.notification(ses_event("open", "ses-msg-1")))
    post(client, sns_signer.notification(ses_event("open", "ses-msg-1", timestamp="2025-05-01T12:00:01.000Z")))

    assert DeliveryEvent.objects.count() == 3


def test_a_replayed_subscription_confirmation_is_not_fetched_twice(client, sns_signer, settings, db):
    settings.SNS_SUBSCRIBE_URL_REGEX = sns_signer.cert_url_regex
    envelope = sns_signer.subscription_confirmation()

    responses = [post(client, envelope), post(client, envelope)]

    assert [response.status_code for response in responses] == [200, 200]
    visits = [request for request in sns_signer.requests if request.path == "/confirm-subscription"]
    assert len(visits) == 1
    assert AuditEntry.objects.filter(action="webhook.sns_subscription_confirmed").count() == 1


@pytest.mark.parametrize("url", [
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
    "https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0123abcd.pem",
])
def test_the_default_certificate_pattern_accepts_amazon_sns_certificates(url):
    assert sns.trusted_certificate_url(url)


@pytest.mark.parametrize("url", [
    "https://sns.s3.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.attacker.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com/other.pem",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem\n",
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-nothex.pem",
    "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0123abcd.pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123abcd.pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/SimpleNotificationService-0123abcd.pem",
])
def test_the_default_certificate_pattern_refuses_other_addresses(url):
    assert not sns.trusted_certificate_url(url)


@pytest.mark.parametrize("url, trusted", [
    ("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:1:t&Token=ab",
     True),
    ("https://sns.cn-northwest-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=ab", True),
    ("https://sns.s3.amazonaws.com/?Action=ConfirmSubscription&Token=ab", False),
    ("https://sns.us-west-2.amazonaws.com.evil.example/?Action=ConfirmSubscription", False),
    ("https://sns.us-west-2.amazonaws.com@evil.example/?Action=ConfirmSubscription", False),
    ("http://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription", False),
])
def test_the_default_subscribe_pattern_accepts_only_amazon_sns(url, trusted):
    assert sns.trusted_subscribe_url(url) is trusted


ODD_SHAPES = {
    "mail is a string": lambda e: {**e, "mail": "ses-msg-1"},
    "mail is a list": lambda e: {**e, "mail": ["ses-msg-1"]},
    "messageId is a number": lambda e: {**e, "mail": {**e["mail"], "messageId": 12}},
    "destination is a string": lambda e: {**e, "mail": {**e["mail"], "destination": "alice@example.com"}},
    "tags is a list": lambda e: {**e, "mail": {**e["mail"], "tags": ["x"]}},
    "tag values are a string": lambda e: {**e, "mail": {**e["mail"], "tags": {"omni_delivery": "12"}}},
    "bounce is a string": lambda e: {**e, "bounce": "Permanent"},
    "bouncedRecipients is not a list": lambda e: {**e, "bounce": {**e["bounce"], "bouncedRecipients": "x@y"}},
    "recipients are strings": lambda e: {**e, "bounce": {**e["bounce"], "bouncedRecipients": ["alice@example.com"]}},
    "recipient address is a number": lambda e: {**e, "bounce": {**e["bounce"],
                                                                "bouncedRecipients": [{"emailAddress": 5}]}},
    "bounceType is a list": lambda e: {**e, "bounce": {**e["bounce"], "bounceType": ["Permanent"]}},
    "timestamp is a number": lambda e: {**e, "bounce": {**e["bounce"], "timestamp": 1e300}},
    "eventType is a list": lambda e: {**e, "eventType": ["Bounce"]},
    "a NUL in the address": lambda e: {**e, "bounce": {**e["bounce"],
                                                       "bouncedRecipients": [{"emailAddress": "a\x00@example.com"}]}},
    "a lone surrogate": lambda e: {**e, "bounce": {**e["bounce"], "bounceSubType": "\ud800"}},
    "a very long message id": lambda e: {**e, "mail": {**e["mail"], "messageId": "m" * 5000}},
}


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_an_authentic_message_of_odd_shape_is_kept_and_never_answers_500(client, sns_signer, ses_delivery, shape):
    event = ODD_SHAPES[shape](ses_event("bounce", "ses-msg-1"))

    response = post(client, sns_signer.notification(json.dumps(event)))

    assert response.status_code == 200
    assert DeliveryEvent.objects.count() == 1


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_json_is_a_bad_request_before_any_signature_check(client, sns_signer, db, depth):
    body = '{"Type": "Notification", "Message": ' + "[" * depth + "]" * depth + "}"

    response = client.post(SES_URL, data=body, content_type="text/plain")

    assert response.status_code == 400
    assert sns_signer.requests == []
    assert not DeliveryEvent.objects.exists()
