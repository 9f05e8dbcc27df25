"""Marketing email carries an unsubscribe link in its body, not only in its List-Unsubscribe
header: templates print `unsubscribe_url`, and publishing refuses marketing email without it."""
import re

import pytest
from django.core.exceptions import ValidationError

from channels.delivery import send_delivery
from channels.models import Delivery, DeliveryStatus, Message, MessageSource
from compliance.actions import record_consent_change
from compliance.links import read_unsubscribe_token
from contacts.models import Contact
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

LINK = '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'


@pytest.fixture
def contact(db):
    return Contact.objects.create(external_id="alice", email="alice@example.com", first_name="Alice")


def email(template, *, locale="en", text_body="", html_body=""):
    return TemplateVariant.objects.create(template=template, channel="email", locale=locale, subject="Sale",
                                          text_body=text_body, html_body=html_body)


# --- at publish -------------------------------------------------------------------------------

def test_a_marketing_email_without_the_link_is_refused_saying_what_to_add(promo):
    # given a marketing email whose HTML has no unsubscribe link (its text part has one: the
    # HTML is what most people read)
    email(promo, locale="fr", text_body="Unsubscribe: {{ unsubscribe_url }}", html_body="<p>20% off.</p>")

    # when it is published, then it is refused naming the variant and the link to add
    with pytest.raises(ValidationError) as refused:
        publish_template(promo)

    assert refused.value.messages == [
        'email/fr html_body: a marketing email must print its unsubscribe link outside any condition or loop; '
        'add <a href="{{ unsubscribe_url }}">Unsubscribe</a>.']
    assert not promo.versions.exists()


def test_a_text_only_marketing_email_needs_the_link_in_its_text(promo):
    email(promo, text_body="20% off.")

    with pytest.raises(ValidationError) as refused:
        publish_template(promo)

    assert refused.value.messages == [
        "email/en text_body: a marketing email must print its unsubscribe link outside any condition or loop; "
        "add Unsubscribe: {{ unsubscribe_url }}."]


@pytest.mark.parametrize("html_body", [
    "<p>20% off.</p>{% if contact.attributes.vip %}" + LINK + "{% endif %}",
    "<p>20% off.</p>{% for _ in [1] %}" + LINK + "{% endfor %}",
    "<p>20% off.</p>{# " + LINK + " #}",
    "<p>20% off. {{ unsubscribe_urls }}</p>",
    "<p>20% off.</p><!-- " + LINK + " -->",
])
def test_a_link_that_may_never_be_printed_does_not_count(promo, html_body):
    email(promo, html_body=html_body)

    with pytest.raises(ValidationError, match="must print its unsubscribe link"):
        publish_template(promo)


@pytest.mark.parametrize("variant", [
    {"html_body": "<p>20% off, {{ first_name }}.</p>" + LINK},
    {"html_body": '<p>20% off.</p><a href="{{ unsubscribe_url | e }}">Unsubscribe</a>'},
    {"html_body": "<!-- the footer --><p>20% off.</p>" + LINK + "<!-- end -->"},
    {"text_body": "20% off.\nUnsubscribe: {{ unsubscribe_url }}"},
])
def test_a_marketing_email_printing_the_link_is_published(promo, variant):
    email(promo, **variant)

    assert publish_template(promo).number == 1


def test_transactional_email_needs_no_link(db):
    receipt = Template.objects.create(key="receipt", name="Receipt", purpose="transactional")
    email(receipt, text_body="Paid.", html_body="<p>Paid.</p>")

    assert publish_template(receipt).number == 1


def test_the_admin_says_which_email_lacks_the_link(promo, admin_client):
    email(promo, html_body="<p>20% off.</p>")

    response = admin_client.post("/admin/message_templates/template/",
                                 {"action": "publish_new_version", "_selected_action": [promo.pk]}, follow=True)

    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["spring-sale was not published: email/en html_body: a marketing email must print its "
                     'unsubscribe link outside any condition or loop; add <a href="{{ unsubscribe_url }}">'
                     "Unsubscribe</a>."]


# --- when sent --------------------------------------------------------------------------------

def send_email(version, contact) -> Delivery:
    record_consent_change(contact, "email", version.purpose, "granted", "form", evidence={"form": "signup"},
                          announce=False)
    message = Message.objects.create(contact=contact, purpose=version.purpose, template_version=version,
                                     source=MessageSource.API, channel_plan=[{"channel": "email"}])
    delivery = Delivery.objects.create(message=message, contact=contact, channel="email", provider="sandbox",
                                       to_address=contact.email)
    send_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def test_a_sent_marketing_email_links_to_this_contacts_unsubscribe_page_for_this_message(promo, contact, client,
                                                                                          settings):
    # given a published marketing email printing the link
    email(promo, html_body="<p>20% off, {{ first_name }}.</p>" + LINK)
    version = publish_template(promo)

    # when it is sent
    delivery = send_email(version, contact)

    # then its HTML carries a signed link naming the contact, the delivery and the message, also
    # kept in the text part made from the HTML
    assert delivery.status == DeliveryStatus.SENT
    url = re.search(r'href="([^"]+)"', delivery.html_body).group(1)
    assert url.startswith(f"{settings.OMNI_PUBLIC_URL}/u/unsubscribe/")
    link = read_unsubscribe_token(url.rsplit("/", 1)[1])
    assert (link.contact, link.delivery_id, link.message_id) == (contact, delivery.pk, delivery.message_id)
    assert f"Unsubscribe ({url})" in delivery.text_body
    # and following it opens the preference page
    assert client.get(url.removeprefix(settings.OMNI_PUBLIC_URL)).status_code == 200


def test_any_email_may_print_the_link(db, contact, settings):
    news = Template.objects.create(key="news", name="News", purpose="informational")
    email(news, text_body="News. Manage what you receive: {{ unsubscribe_url }}")

    delivery = send_email(publish_template(news), contact)

    assert delivery.status == DeliveryStatus.SENT
    assert f"Manage what you receive: {settings.OMNI_PUBLIC_URL}/u/unsubscribe/" in delivery.text_body
