"""A marketing SMS or WhatsApp variant must carry its locale's opt-out line to be published."""
import pytest
from django.core.exceptions import ValidationError

from templates.actions import publish_template
from templates.models import OptOutDisclosure, Template, TemplateVariant


def variant(template, channel, text, locale="en"):
    return TemplateVariant.objects.create(template=template, channel=channel, locale=locale, text_body=text)


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_marketing_variant_without_the_opt_out_line_is_refused_naming_it(promo, channel):
    variant(promo, "email", "Everything is 20% off. Unsubscribe: {{ unsubscribe_url }}")
    variant(promo, channel, "Everything is 20% off this week!")

    with pytest.raises(ValidationError) as refused:
        publish_template(promo)

    assert refused.value.messages == [
        f"{channel}/en text_body: a marketing {dict(sms='SMS', whatsapp='WhatsApp')[channel]} variant must "
        f"include the opt-out line 'Reply STOP to opt out.'."]
    assert not promo.versions.exists()


def test_the_line_is_found_in_any_case_and_spacing(promo):
    variant(promo, "sms", "Everything is 20% off! reply  stop\nto OPT OUT.")

    assert publish_template(promo).number == 1


def test_transactional_and_email_variants_need_no_line(promo):
    variant(promo, "email", "Everything is 20% off. Unsubscribe: {{ unsubscribe_url }}")
    receipt = Template.objects.create(key="receipt", name="Receipt", purpose="transactional")
    variant(receipt, "sms", "Your order shipped.")

    assert publish_template(promo).number == 1
    assert publish_template(receipt).number == 1


def test_each_locale_needs_its_own_line_and_a_regional_locale_uses_its_languages(promo):
    variant(promo, "sms", "Tout est à -20 %. Répondez STOP pour vous désabonner.", locale="fr-CA")

    with pytest.raises(ValidationError, match="no opt-out line is set for locale 'fr-CA'"):
        publish_template(promo)

    OptOutDisclosure.objects.create(locale="fr", text="Répondez STOP pour vous désabonner.")
    assert publish_template(promo).number == 1


def test_staff_can_change_the_english_line(promo):
    OptOutDisclosure.objects.filter(locale="en").update(text="Text STOP to end.")
    variant(promo, "sms", "20% off. Reply STOP to opt out.")

    with pytest.raises(ValidationError, match="'Text STOP to end.'"):
        publish_template(promo)


def test_the_english_line_stays_required_if_its_row_is_deleted(promo):
    OptOutDisclosure.objects.all().delete()
    variant(promo, "sms", "Everything is 20% off.")

    with pytest.raises(ValidationError, match="'Reply STOP to opt out.'"):
        publish_template(promo)


def test_the_admin_says_which_variant_lacks_the_line(promo, admin_client):
    variant(promo, "whatsapp", "Everything is 20% off.", locale="en-GB")

    response = admin_client.post("/admin/message_templates/template/",
                                 {"action": "publish_new_version", "_selected_action": [promo.pk]}, follow=True)

    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["spring-sale was not published: whatsapp/en-GB text_body: a marketing WhatsApp variant must "
                     "include the opt-out line 'Reply STOP to opt out.'."]
