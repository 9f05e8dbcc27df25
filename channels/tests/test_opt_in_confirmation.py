"""The first message after an SMS opt-in confirms the program, its frequency, HELP and STOP:
compliance announces the opt-in (compliance.hooks.opted_in), channels sends "optin:<change id>"."""
import pytest

from channels.models import Delivery, Message, MessageSource, MessageStatus
from compliance import hooks
from compliance.actions import record_consent_change


def confirmations():
    return Message.objects.filter(source=MessageSource.SYSTEM, idempotency_key__startswith="optin:")


def test_an_sms_opt_in_from_a_form_is_confirmed_once_with_the_start_reply(contact, keyword_lists):
    # when Alice opts in to SMS marketing and informational messages in one form
    change = record_consent_change(contact, "sms", "marketing", "granted", "form", evidence={"form": "signup"})
    record_consent_change(contact, "sms", "informational", "granted", "form")

    # then one confirmation, naming HELP and STOP, is queued by SMS
    message = confirmations().get()
    assert message.idempotency_key == f"optin:{change.pk}"
    assert (message.purpose, message.status, message.exemption) == ("transactional", MessageStatus.QUEUED, "")
    text = message.content[0]["text_body"]
    assert "HELP" in text and "STOP" in text and "frequency" in text
    assert Delivery.objects.get(message=message).to_address == "+14155550100"


def test_granting_what_is_already_granted_confirms_nothing_again(contact, keyword_lists):
    record_consent_change(contact, "sms", "marketing", "granted", "api")
    record_consent_change(contact, "sms", "marketing", "granted", "api")

    assert confirmations().count() == 1


def test_an_opt_in_after_an_opt_out_is_confirmed_again(contact, keyword_lists):
    record_consent_change(contact, "sms", "marketing", "granted", "api")
    record_consent_change(contact, "sms", "marketing", "revoked", "preference_page")
    record_consent_change(contact, "sms", "marketing", "granted", "api")

    assert confirmations().count() == 2


def test_an_imported_opt_in_is_not_confirmed_unless_the_setting_or_the_change_asks(contact, keyword_lists, settings):
    record_consent_change(contact, "sms", "marketing", "granted", "import")
    assert not confirmations().exists()

    record_consent_change(contact, "sms", "marketing", "revoked", "import")
    record_consent_change(contact, "sms", "marketing", "granted", "import", announce=True)
    assert confirmations().count() == 1

    settings.OMNI_CONFIRM_IMPORTED_OPT_INS = True
    record_consent_change(contact, "sms", "marketing", "revoked", "import")
    record_consent_change(contact, "sms", "marketing", "granted", "import")
    assert confirmations().count() == 2


def test_a_form_opt_in_can_be_recorded_without_its_confirmation(contact, keyword_lists):
    record_consent_change(contact, "sms", "marketing", "granted", "form", announce=False)

    assert not confirmations().exists()


def test_an_email_or_whatsapp_opt_in_sends_no_sms_confirmation(contact, keyword_lists):
    record_consent_change(contact, "email", "marketing", "granted", "form")
    record_consent_change(contact, "whatsapp", "marketing", "granted", "form")

    assert not Message.objects.exists()


def test_the_opt_in_is_announced_inside_the_consent_changes_transaction(contact, keyword_lists):
    # given a receiver that fails after channels made its message
    def fail(sender=None, **kwargs):
        raise RuntimeError("receiver failed")

    hooks.opted_in.connect(fail, dispatch_uid="test.fail")
    try:
        with pytest.raises(RuntimeError):
            record_consent_change(contact, "sms", "marketing", "granted", "form")
    finally:
        hooks.opted_in.disconnect(dispatch_uid="test.fail")

    # then neither the consent nor the confirmation was kept
    assert not contact.consent_changes.exists()
    assert not Message.objects.exists()


def test_an_opt_in_through_the_contact_api_is_confirmed(client, db, keyword_lists):
    from omni.models import ApiKey, ApiScope

    _, raw_key = ApiKey.generate("signup form", [ApiScope.CONTACTS_WRITE])
    response = client.put(
        "/api/v1/contacts/bea", content_type="application/json", headers={"Authorization": f"Bearer {raw_key}"},
        data={"phone": "+14155550123", "consents": [
            {"channel": "sms", "purpose": "marketing", "status": "granted", "evidence": {"form": "signup"}}]},
    )

    assert response.status_code == 201, response.content
    assert Delivery.objects.get(message__in=confirmations()).to_address == "+14155550123"


def test_the_demo_data_sends_no_opt_in_confirmations(demo_logins):
    assert not confirmations().exists()
    assert not Message.objects.filter(source=MessageSource.SYSTEM).exists()
