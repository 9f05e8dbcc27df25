"""Property-based tests of the doors: whatever shape or string arrives, the API and the
webhooks answer with a 2xx or a 4xx, never a 500 (a provider would retry a 500 forever).

Example counts are kept small so the suite stays fast; failures found here became the
example-based tests next to each door.
"""
import json

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from twilio.request_validator import RequestValidator

from channels.tests.ses_events import ses_event
from channels.webhooks.sns import ses_event_from_notification
from omni.lib.text import first_unstorable
from omni.models import ApiKey, ApiScope

PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any character, lone surrogates and NUL included.
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def optional_fields(fields: dict):
    """Objects holding any subset of `fields`, each drawn from its strategy."""
    return st.fixed_dictionaries({}, optional=fields)


event_bodies = optional_fields({
    "external_id": st.sampled_from(["crm-1", "crm-2"]) | json_values,
    "name": st.sampled_from(["signed_up", "order.placed"]) | json_values,
    "properties": json_values,
    "occurred_at": st.sampled_from(["2025-05-01T12:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z"])
    | json_values,
    "event_id": json_values,
    "contact": optional_fields({
        "external_id": st.sampled_from(["crm-1", "crm-3"]) | json_values,
        "email": st.sampled_from(["ada@example.com"]) | json_values,
        "phone": st.sampled_from(["(415) 555-0199", "+14155550100"]) | json_values,
        "country": st.sampled_from(["US", "us", "ZZ"]) | json_values,
        "consents": json_values, "attributes": json_values, "locale": json_values, "timezone": json_values,
    }) | json_values,
}) | json_values


@pytest.fixture
def api_key_header(db):
    _, raw_key = ApiKey.generate("Property", [ApiScope.EVENTS_WRITE, ApiScope.CONTACTS_WRITE,
                                              ApiScope.CONTACTS_READ])
    return {"Authorization": f"Bearer {raw_key}"}


@PROPERTY_SETTINGS
@given(body=event_bodies, key=st.none() | any_text.filter(lambda key: key.isprintable()))
def test_the_event_api_never_answers_5xx(client, api_key_header, body, key):
    headers = {**api_key_header, **({"Idempotency-Key": key.encode("utf-8", "replace").decode("latin-1")}
                                    if key else {})}

    response = client.post("/api/v1/events", json.dumps(body), content_type="application/json", headers=headers)

    assert response.status_code < 500
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "field"}


@PROPERTY_SETTINGS
@given(body=json_values | optional_fields({"email": json_values, "phone": json_values, "country": json_values,
                                           "attributes": json_values, "consents": json_values}),
       external_id=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=10))
def test_the_contact_api_never_answers_5xx(client, api_key_header, body, external_id):
    from urllib.parse import quote

    path = f"/api/v1/contacts/{quote(external_id, safe='')}"

    response = client.put(path, json.dumps(body), content_type="application/json", headers=api_key_header)

    assert response.status_code < 500


def mangled_ses_events():
    """SES event records with any part replaced by any JSON value."""
    names = st.sampled_from(["bounce", "complaint", "delivery", "open", "click", "send", "identity_bounce"])
    paths = st.sampled_from([(), ("mail",), ("mail", "messageId"), ("mail", "destination"), ("mail", "tags"),
                             ("mail", "timestamp"), ("bounce",), ("bounce", "bouncedRecipients"),
                             ("bounce", "bounceType"), ("bounce", "timestamp"), ("complaint", "complainedRecipients"),
                             ("eventType",), ("notificationType",), ("delivery", "recipients")])

    @st.composite
    def build(draw):
        event = ses_event(draw(names), draw(st.sampled_from(["ses-msg-1", "other"])))
        for _ in range(draw(st.integers(1, 3))):
            path = draw(paths)
            value = draw(json_values)
            if not path:
                return value
            target = event
            for key in path[:-1]:
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                target = target[key]
            target[path[-1]] = value
        return event

    return build()


@pytest.mark.django_db
@PROPERTY_SETTINGS
@given(event=mangled_ses_events(), timestamp=st.sampled_from(["2025-05-01T12:00:00.000Z", "0001-01-01T00:00:00Z"])
       | any_text)
def test_the_ses_event_parser_never_raises_and_returns_storable_values(event, timestamp):
    envelope = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:t",
                "Message": json.dumps(event), "Timestamp": timestamp}

    arguments = ses_event_from_notification(envelope)

    assert first_unstorable(arguments["raw"]) is None
    assert first_unstorable([arguments["provider_event_id"], arguments["provider_message_id"],
                             arguments["detail"], arguments.get("recipient", ""),
                             *arguments.get("recipients", [])]) is None


@PROPERTY_SETTINGS
@given(event=mangled_ses_events())
def test_the_ses_webhook_never_answers_5xx_to_a_signed_message(client, sns_signer, db, event):
    envelope = sns_signer.notification(json.dumps(event))

    response = client.post("/webhooks/ses/", data=json.dumps(envelope), content_type="text/plain")

    assert response.status_code < 500


# Form-encoded text: surrogates cannot be sent (Django decodes bad UTF-8 as U+FFFD).
form_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
twilio_params = optional_fields({
    "MessageSid": st.sampled_from(["SM1", "SMin1"]) | form_text,
    "SmsSid": form_text,
    "MessageStatus": st.sampled_from(["delivered", "undelivered", "failed", "read", "sent"]) | form_text,
    "ErrorCode": st.sampled_from(["30005", "21211", "²"]) | form_text,
    "From": st.sampled_from(["+14155550100", "whatsapp:+14155550100"]) | form_text,
    "To": st.sampled_from(["+15005550006", "rcs:+1"]) | form_text,
    "Body": form_text,
    "NumMedia": st.sampled_from(["0", "1", "3", "99999999999999999999"]) | form_text,
    "MediaUrl0": form_text,
}).flatmap(lambda params: st.dictionaries(form_text, form_text, max_size=3).map(lambda extra: {**extra, **params}))


@PROPERTY_SETTINGS
@given(params=twilio_params, path=st.sampled_from(["/webhooks/twilio/status/", "/webhooks/twilio/inbound/"]),
       delivery=st.sampled_from(["", "delivery=1", "delivery=99999999999999999999999", "delivery=x"]))
def test_the_twilio_webhooks_never_answer_5xx_to_a_signed_request(client, twilio_settings, db, params, path,
                                                                   delivery):
    full_path = f"{path}?{delivery}" if delivery else path
    url = f"{twilio_settings.OMNI_PUBLIC_URL}{full_path}"
    signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)

    response = client.post(full_path, data=params, headers={"X-Twilio-Signature": signature})

    assert response.status_code < 500
