"""Edges of templates as marketers meet them: locales as contacts carry them, opt-out lines that
are really sent, null variables, and email parts (the plain-text part, the preheader)."""
import pytest
from django.core.exceptions import ValidationError

from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageSource, OutboxMessage
from compliance.actions import record_consent_change
from contacts.models import Contact
from templates.actions import publish_template
from templates.models import Template, TemplateVariant
from templates.rendering import RenderError, render_variant


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="alice", email="alice@example.com", phone="+14155550100",
                                  first_name="Alice")


def send(version, contact, channel, *, variables=None):
    """Send `version` to `contact` on `channel` through the sandbox, as the worker does; the
    delivery after it."""
    for each in ("email", "sms"):
        record_consent_change(contact, each, version.purpose, "granted", "form", evidence={"form": "signup"},
                              announce=False)
    message = Message.objects.create(contact=contact, purpose=version.purpose, template_version=version,
                                     source=MessageSource.API, channel_plan=[{"channel": channel}],
                                     variables=variables or {})
    delivery = Delivery.objects.create(message=message, contact=contact, channel=channel, provider="sandbox",
                                       to_address=contact.address_for(channel))
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


# --- locales ----------------------------------------------------------------------------------

@pytest.mark.parametrize("locale", ["fr-ca", "FR", "Fr-CA"])
def test_a_contact_whose_locale_is_written_in_another_case_gets_their_language(promo, contact, locale):
    # given a template in English and French, and a contact imported with the tag in another
    # case (BCP 47 tags are case-insensitive; the API and imports accept them so)
    TemplateVariant.objects.create(template=promo, channel="email", locale="en", subject="Hello",
                                   text_body="Hi. Unsubscribe: {{ unsubscribe_url }}")
    TemplateVariant.objects.create(template=promo, channel="email", locale="fr", subject="Bonjour",
                                   text_body="Salut. Désabonnement : {{ unsubscribe_url }}")
    version = publish_template(promo)
    contact.locale = locale
    contact.save()

    # when
    delivery = send(version, contact, "email")

    # then they read French, not the default English
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.subject == "Bonjour"


# --- opt-out lines ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "Everything is 20% off! {# Reply STOP to opt out. #}",
    "Everything is 20% off!{% if contact.attributes.vip %} Reply STOP to opt out.{% endif %}",
    "Everything is 20% off!{% for _ in [] %} Reply STOP to opt out.{% endfor %}",
])
def test_an_opt_out_line_that_may_never_be_sent_does_not_count(promo, text):
    # given a marketing SMS whose opt-out line is in a comment, a condition or a loop
    TemplateVariant.objects.create(template=promo, channel="sms", locale="en", text_body=text)

    # when / then publishing refuses it, as it refuses one with no line
    with pytest.raises(ValidationError, match="must include the opt-out line 'Reply STOP to opt out.'"):
        publish_template(promo)
    assert not promo.versions.exists()


def test_an_opt_out_line_split_by_a_variable_does_not_count(promo):
    TemplateVariant.objects.create(template=promo, channel="sms", locale="en",
                                   text_body="Sale! Reply {{ first_name }} STOP to opt out.")

    with pytest.raises(ValidationError, match="must include the opt-out line"):
        publish_template(promo)


def test_an_opt_out_line_beside_variables_and_conditions_counts(promo, contact):
    contact.attributes = {"vip": False}
    contact.save()
    TemplateVariant.objects.create(
        template=promo, channel="sms", locale="en",
        text_body="{{ first_name }}, {% if contact.attributes.vip %}VIPs get 30%{% else %}20%{% endif %} off!\n"
                  "Reply STOP to opt out.")

    version = publish_template(promo)

    assert send(version, contact, "sms").text_body == "Alice, 20% off!\nReply STOP to opt out."


# --- null variables ---------------------------------------------------------------------------

@pytest.mark.parametrize("field, source", [("text_body", "Use code {{ coupon }} today"),
                                           ("html_body", "<p>Use code {{ coupon }} today</p>"),
                                           ("subject", "{{ contact.attributes.plan }} renewal")])
def test_a_null_variable_is_an_error_not_the_word_none(field, source):
    with pytest.raises(RenderError) as error:
        render_variant({field: source}, {"coupon": None, "contact": {"attributes": {"plan": None}}})

    assert error.value.field == field


def test_a_null_variable_may_be_given_a_default_or_tested():
    variant = {"text_body": "Hi {{ nickname | default('there', true) }}{% if coupon %}, use {{ coupon }}{% endif %}"}

    assert render_variant(variant, {"nickname": None, "coupon": None})["text_body"] == "Hi there"


def test_a_message_with_a_null_variable_is_not_sent(db, contact):
    template = Template.objects.create(key="receipt", name="Receipt", purpose="transactional")
    TemplateVariant.objects.create(template=template, channel="sms", locale="en",
                                   text_body="Order {{ order_id }} shipped")
    version = publish_template(template)

    delivery = send(version, contact, "sms", variables={"order_id": None})

    assert delivery.status == DeliveryStatus.FAILED and delivery.error_code == "render_error"
    assert not OutboxMessage.objects.exists()


# --- email parts ------------------------------------------------------------------------------

@pytest.fixture
def html_only(db):
    template = Template.objects.create(key="news", name="News", purpose="transactional")
    TemplateVariant.objects.create(
        template=template, channel="email", locale="en", subject="News", preheader="Tom & Jerry <3 {{ first_name }}",
        html_body='<html><head><style>p { color: red }</style></head><body><h1>Hello {{ first_name }}</h1>'
                  '<p>Our <b>new</b> range &amp; more.</p><p><a href="https://shop.example.com/new">See it</a></p>'
                  '</body></html>')
    return publish_template(template)


def test_an_html_email_without_a_text_part_is_sent_with_one_made_from_the_html(html_only, contact):
    delivery = send(html_only, contact, "email")

    sent = OutboxMessage.objects.get(delivery=delivery)
    assert sent.text_body == "Hello Alice\n\nOur new range & more.\n\nSee it (https://shop.example.com/new)"
    assert delivery.text_body == sent.text_body


def test_the_preheader_is_sent_hidden_at_the_top_of_the_html(html_only, contact):
    delivery = send(html_only, contact, "email")

    html = OutboxMessage.objects.get(delivery=delivery).html_body
    hidden = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">Tom &amp; Jerry &lt;3 Alice</div>'
    assert html.startswith(f"<html><head><style>p {{ color: red }}</style></head><body>{hidden}<h1>Hello Alice</h1>")
    # and it is not read twice in the text part
    assert "Tom" not in delivery.text_body


def test_a_written_text_part_is_kept_and_a_text_only_email_is_unchanged(db, contact):
    template = Template.objects.create(key="plain", name="Plain", purpose="transactional")
    TemplateVariant.objects.create(template=template, channel="email", locale="en", subject="Hi", preheader="Soon",
                                   text_body="Hi {{ first_name }}", html_body="<p>Hello {{ first_name }}</p>")
    TemplateVariant.objects.create(template=template, channel="sms", locale="en", text_body="<b>Hi</b>")
    version = publish_template(template)

    email = send(version, contact, "email")
    sms = send(version, contact, "sms")

    assert (email.text_body, email.html_body) == (
        "Hi Alice", '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">Soon</div><p>Hello Alice</p>')
    assert (sms.text_body, sms.html_body) == ("<b>Hi</b>", "")


@pytest.mark.parametrize("source", [
    "{{ contact.attributes.tags.append('vip') }}",
    "{% set _ = contact.attributes.update({'plan': 'free'}) %}Hi",
    "{{ contact.attributes.pop('plan') }}",
])
def test_a_template_cannot_change_the_values_it_is_given(source):
    # given the values a contact's message renders with (the text part renders before the HTML)
    variables = {"contact": {"first_name": "Ann", "attributes": {"plan": "pro", "tags": ["new"]}}}

    # when a template calls a method that would change them, it is refused
    with pytest.raises(RenderError, match="unsafe"):
        render_variant({"channel": "sms", "text_body": source}, variables)

    # and they are as they were
    assert variables == {"contact": {"first_name": "Ann", "attributes": {"plan": "pro", "tags": ["new"]}}}
