"""STOP, STOPALL, START and HELP texted to Omni: consent recorded, one reply, through signed
Twilio webhooks (channels.consent_messages, called by record_inbound_message)."""
import pytest
from twilio.request_validator import RequestValidator

from channels.models import Delivery, InboundMessage, Message, MessageSource, MessageStatus
from compliance.actions import record_consent_change, suppress
from compliance.keywords import FLAG, IGNORE, OPT_OUT_AND_FLAG
from compliance.models import Consent, ConsentChange, KeywordList, Suppression
from contacts.models import Contact
from omni.models import AuditEntry

INBOUND_PATH = "/webhooks/twilio/inbound/"
OUR_NUMBER = "+15005550006"
OTHER_NUMBER = "+15005550007"


@pytest.fixture
def twilio_post(client, twilio_settings):
    """POST form parameters to a Twilio webhook, signed as Twilio signs them (over the public URL)."""

    def post(path, params):
        url = f"{twilio_settings.OMNI_PUBLIC_URL}{path}"
        signature = RequestValidator(twilio_settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
        response = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert response.status_code == 200, response.content
        return response

    return post


@pytest.fixture
def text_in(twilio_post):
    """text_in("STOP") posts a signed inbound Twilio message from Alice's phone to our number."""

    def send(body, *, sid="SMin1", sender="+14155550100", to=OUR_NUMBER):
        twilio_post(INBOUND_PATH, {"MessageSid": sid, "SmsMessageSid": sid,
                                   "AccountSid": "AC00000000000000000000000000000001", "From": sender, "To": to,
                                   "Body": body, "NumMedia": "0"})
        return InboundMessage.objects.get(provider_message_id=sid)

    return send


@pytest.fixture
def sandbox_sms(twilio_settings):
    """Inbound from Twilio's webhooks, replies through the sandbox (the embedded default)."""
    twilio_settings.OMNI_PROVIDERS = {**twilio_settings.OMNI_PROVIDERS, "sms": "sandbox", "whatsapp": "sandbox"}
    return twilio_settings


@pytest.fixture
def subscriber(contact, keyword_lists):
    """Alice, subscribed to marketing by email and SMS (imported, so no opt-in confirmation)."""
    for channel in ("email", "sms"):
        record_consent_change(contact, channel, "marketing", "granted", "import", lawful_basis="consent")
    return contact


def consent(contact, channel, purpose):
    row = Consent.objects.filter(contact=contact, channel=channel, purpose=purpose).first()
    return row.status if row else "unknown"


def reply_to(inbound):
    return Message.objects.filter(idempotency_key=f"keyword:{inbound.pk}").first()


def test_a_signed_stop_posted_twice_revokes_sms_consent_once_and_queues_one_confirmation(
    sandbox_sms, subscriber, text_in
):
    # when the same STOP arrives twice (Twilio retries a webhook)
    inbound = text_in("STOP")
    text_in("STOP")

    # then SMS marketing and informational are revoked, by keyword, once each
    assert InboundMessage.objects.count() == 1
    assert (inbound.keyword, inbound.needs_agent) == ("stop", False)
    changes = ConsentChange.objects.filter(source="keyword")
    assert sorted(changes.values_list("channel", "purpose", "status")) == [
        ("sms", "informational", "revoked"), ("sms", "marketing", "revoked")]
    assert changes.get(purpose="marketing").evidence["inbound_message"] == inbound.pk
    assert consent(subscriber, "sms", "transactional") == "unknown"
    assert consent(subscriber, "email", "marketing") == "granted"
    # and one confirmation, Omni's own, passing the opt-out it confirms, queued on the sandbox
    confirmation = Message.objects.get(source=MessageSource.SYSTEM)
    assert confirmation.idempotency_key == f"keyword:{inbound.pk}"
    assert (confirmation.exemption, confirmation.status, confirmation.purpose) == (
        "opt_out_confirmation", MessageStatus.QUEUED, "transactional")
    assert "unsubscribed" in confirmation.content[0]["text_body"]
    delivery = Delivery.objects.get(message=confirmation)
    assert (delivery.channel, delivery.provider, delivery.to_address) == ("sms", "sandbox", "+14155550100")
    assert AuditEntry.objects.filter(action="inbound.keyword").count() == 1


def test_where_twilio_answers_keywords_for_the_sender_omni_records_the_stop_and_sends_nothing(
    twilio_settings, subscriber, text_in
):
    # given Twilio carries SMS, with its own opt-out handling on (the default)
    assert twilio_settings.TWILIO_OPT_OUT_HANDLING == ["sms"]

    # when
    inbound = text_in("STOP")
    text_in("STOP")

    # then
    assert inbound.keyword == "stop"
    assert consent(subscriber, "sms", "marketing") == "revoked"
    assert not Message.objects.filter(source=MessageSource.SYSTEM).exists()


def test_a_twilio_sender_whose_own_opt_out_handling_is_off_gets_omnis_confirmation(
    twilio_settings, subscriber, text_in
):
    twilio_settings.TWILIO_OPT_OUT_HANDLING_OFF_FOR = [OTHER_NUMBER]

    handled = text_in("STOP", sid="SMin1", to=OUR_NUMBER)
    answered = text_in("STOP", sid="SMin2", to=OTHER_NUMBER)

    assert reply_to(handled) is None
    assert Delivery.objects.get(message=reply_to(answered)).provider == "twilio"


def test_stopall_revokes_every_channel(sandbox_sms, subscriber, text_in):
    inbound = text_in("stopall")

    assert inbound.keyword == "stop_all"
    for channel in ("email", "sms", "whatsapp", "rcs", "push"):
        assert consent(subscriber, channel, "marketing") == "revoked"
        assert consent(subscriber, channel, "informational") == "revoked"
        assert consent(subscriber, channel, "transactional") == "unknown"
    assert "every channel" in reply_to(inbound).content[0]["text_body"]


def test_a_setting_makes_stop_revoke_transactional_too_and_the_confirmation_still_goes(
    sandbox_sms, subscriber, text_in
):
    sandbox_sms.OMNI_OPT_OUT_REVOKES_TRANSACTIONAL = True

    inbound = text_in("STOP")

    assert consent(subscriber, "sms", "transactional") == "revoked"
    assert reply_to(inbound).status == MessageStatus.QUEUED


def test_start_gives_back_what_stop_took_and_nothing_more(sandbox_sms, subscriber, text_in):
    # given Alice stopped SMS (marketing was granted, informational never given)
    text_in("STOP", sid="SMin1")

    # when
    inbound = text_in("Start", sid="SMin2")

    # then marketing is granted again with its lawful basis; informational is back to unknown
    assert inbound.keyword == "start"
    marketing = Consent.objects.get(contact=subscriber, channel="sms", purpose="marketing")
    assert (marketing.status, marketing.lawful_basis, marketing.last_change.source) == ("granted", "consent", "keyword")
    assert consent(subscriber, "sms", "informational") == "unknown"
    # and the START reply confirms the program, HELP and STOP; no second opt-in confirmation
    text = reply_to(inbound).content[0]["text_body"]
    assert "HELP" in text and "STOP" in text
    assert Message.objects.filter(source=MessageSource.SYSTEM).count() == 2


def test_start_from_someone_never_subscribed_grants_no_marketing(sandbox_sms, contact, keyword_lists, text_in):
    text_in("YES")

    assert consent(contact, "sms", "marketing") == "unknown"
    assert not ConsentChange.objects.exists()


def test_start_does_not_undo_an_opt_out_made_another_way(sandbox_sms, subscriber, text_in):
    record_consent_change(subscriber, "sms", "marketing", "revoked", "admin")

    text_in("START")

    assert consent(subscriber, "sms", "marketing") == "revoked"


def test_start_after_stopall_gives_back_only_the_channel_it_came_on(sandbox_sms, subscriber, text_in):
    text_in("STOPALL", sid="SMin1")
    text_in("START", sid="SMin2")

    assert consent(subscriber, "sms", "marketing") == "granted"
    assert consent(subscriber, "email", "marketing") == "revoked"


def test_start_after_a_carrier_stop_lifts_its_suppression_and_gives_consent_back(sandbox_sms, subscriber, text_in):
    # given a 21610 suppressed the number and revoked SMS consent (source carrier)
    from compliance.actions import record_opt_out

    suppress("+14155550100", channel="sms", reason="stop", contact=subscriber)
    record_opt_out(subscriber, ["sms"], "carrier", evidence={"error_code": "21610"})

    # when
    text_in("UNSTOP")

    # then
    assert not Suppression.objects.exists()
    assert consent(subscriber, "sms", "marketing") == "granted"


def test_help_answers_with_the_help_reply_and_changes_no_consent(sandbox_sms, subscriber, text_in):
    inbound = text_in("help")

    assert inbound.keyword == "help"
    assert not ConsentChange.objects.filter(source="keyword").exists()
    reply = reply_to(inbound)
    assert (reply.exemption, reply.status) == ("", MessageStatus.QUEUED)
    assert reply.content[0]["text_body"] == KeywordList.objects.get(language="en", kind="help").reply


def test_an_empty_reply_is_not_sent(sandbox_sms, subscriber, text_in):
    KeywordList.objects.filter(kind="help").update(reply="")

    assert reply_to(text_in("HELP")) is None


def test_a_whatsapp_stop_revokes_whatsapp_only_and_is_confirmed_even_where_twilio_handles_sms(
    twilio_settings, subscriber, text_in
):
    record_consent_change(subscriber, "whatsapp", "marketing", "granted", "import")

    inbound = text_in("STOP", sender="whatsapp:+14155550100", to=f"whatsapp:{twilio_settings.TWILIO_WHATSAPP_FROM}")

    assert consent(subscriber, "whatsapp", "marketing") == "revoked"
    assert consent(subscriber, "sms", "marketing") == "granted"
    delivery = Delivery.objects.get(message=reply_to(inbound))
    assert (delivery.channel, delivery.provider) == ("whatsapp", "twilio")


def test_a_stop_from_a_number_two_contacts_share_opts_out_both_and_confirms_once(sandbox_sms, subscriber, text_in):
    twin = Contact.objects.create(external_id="alice-work", phone="+14155550100")

    text_in("STOP")

    assert consent(subscriber, "sms", "marketing") == "revoked"
    assert consent(twin, "sms", "marketing") == "revoked"
    assert Message.objects.filter(source=MessageSource.SYSTEM).count() == 1


def test_a_stop_from_a_stranger_is_recorded_on_the_message_only(sandbox_sms, keyword_lists, text_in):
    inbound = text_in("STOP", sender="+14155550199")

    assert (inbound.keyword, inbound.contact) == ("stop", None)
    assert not ConsentChange.objects.exists()
    assert not Message.objects.exists()


def test_the_reply_is_in_the_contacts_language(sandbox_sms, subscriber, text_in):
    KeywordList.objects.create(language="es", kind="stop", words="BAJA, PARAR", reply="Te has dado de baja.")
    subscriber.locale = "es-MX"
    subscriber.save()

    assert reply_to(text_in("baja", sid="SMin1")).content[0]["text_body"] == "Te has dado de baja."
    assert reply_to(text_in("STOP", sid="SMin2")).content[0]["text_body"] == "Te has dado de baja."


def test_a_word_from_another_language_gets_that_languages_reply_when_the_contacts_has_none(
    sandbox_sms, subscriber, text_in
):
    KeywordList.objects.create(language="fr", kind="stop", words="ARRET", reply="Vous êtes désabonné.")
    subscriber.locale = "de"
    subscriber.save()

    inbound = text_in("Arret")

    assert inbound.keyword == "stop"
    assert reply_to(inbound).content[0]["text_body"] == "Vous êtes désabonné."


def test_an_ordinary_text_changes_nothing(sandbox_sms, subscriber, text_in):
    inbound = text_in("Yes please, see you at 5")

    assert (inbound.keyword, inbound.needs_agent) == ("", False)
    assert not ConsentChange.objects.filter(source="keyword").exists()
    assert not AuditEntry.objects.filter(action="inbound.keyword").exists()


def test_staff_find_the_messages_that_need_an_agent_with_the_admin_filter(
    sandbox_sms, subscriber, text_in, admin_client
):
    text_in("please stop texting me", sid="SMin1")
    text_in("Thanks!", sid="SMin2")

    response = admin_client.get("/admin/channels/inboundmessage/?needs_agent__exact=1")

    assert response.status_code == 200
    assert list(response.context["cl"].result_list.values_list("body", flat=True)) == ["please stop texting me"]


# --- each policy for an opt-out word inside other text, on PostgreSQL ------------------------

EXPECTED = {
    # body: {policy: (keyword, needs_agent, SMS marketing afterwards)}
    "STOP ": {OPT_OUT_AND_FLAG: ("stop", False, "revoked"), FLAG: ("stop", False, "revoked"),
              IGNORE: ("stop", False, "revoked")},
    "Stop.": {OPT_OUT_AND_FLAG: ("stop", False, "revoked"), FLAG: ("stop", False, "revoked"),
              IGNORE: ("stop", False, "revoked")},
    "please stop texting me": {OPT_OUT_AND_FLAG: ("stop", True, "revoked"), FLAG: ("", True, "granted"),
                               IGNORE: ("", False, "granted")},
    "non-stop deals?": {OPT_OUT_AND_FLAG: ("", False, "granted"), FLAG: ("", False, "granted"),
                        IGNORE: ("", False, "granted")},
}


@pytest.mark.postgres
@pytest.mark.parametrize("policy", [OPT_OUT_AND_FLAG, FLAG, IGNORE])
@pytest.mark.parametrize("body", list(EXPECTED))
def test_stop_in_its_forms_under_each_embedded_opt_out_policy(sandbox_sms, subscriber, text_in, body, policy):
    sandbox_sms.OMNI_KEYWORD_EMBEDDED_OPT_OUT = policy
    keyword, needs_agent, marketing = EXPECTED[body][policy]

    inbound = text_in(body)
    text_in(body)

    inbound.refresh_from_db()
    assert (inbound.keyword, inbound.needs_agent) == (keyword, needs_agent)
    assert consent(subscriber, "sms", "marketing") == marketing
    assert Message.objects.filter(source=MessageSource.SYSTEM).count() == (1 if keyword else 0)
