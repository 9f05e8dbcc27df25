"""A started campaign for the fan-out's tests, built the way the start leaves one: the campaign
scheduled, one pending CampaignRecipient per contact with its send time. (The start itself is
campaigns/campaign_start.py; these tests are about what happens after it.)"""
from datetime import timedelta

from django.utils import timezone

from campaigns.campaign_state import move_campaign
from campaigns.models import Campaign, CampaignRecipient, CampaignStatus
from compliance.models import Consent
from contacts.models import Contact
from templates.actions import publish_template
from templates.models import Template, TemplateVariant


def newsletter_template(key="newsletter") -> Template:
    template = Template.objects.create(key=key, name="Newsletter", purpose="marketing")
    TemplateVariant.objects.create(template=template, channel="email", subject="News, {{ first_name }}",
                                   text_body="Hi {{ first_name }}",
                                   html_body='<p>Hi {{ first_name }}</p>'
                                             '<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
    publish_template(template)
    return template


def reachable_contacts(count: int, prefix="c") -> list[Contact]:
    """Contacts with an email address and marketing email consent, in bulk."""
    contacts = Contact.objects.bulk_create(
        Contact(external_id=f"{prefix}{i}", email=f"{prefix}{i}@example.com", first_name=f"C{i}")
        for i in range(count))
    Consent.objects.bulk_create(Consent(contact=c, channel="email", purpose="marketing", status="granted")
                                for c in contacts)
    return contacts


def started_campaign(contacts, *, template=None, send_at=None, **fields) -> Campaign:
    """A scheduled campaign with one pending recipient per contact, due at `send_at` (a minute ago)."""
    template = template or newsletter_template()
    fields.setdefault("channel_plan", [{"channel": "email"}])
    campaign = Campaign.objects.create(name=fields.pop("name", "Spring sale"), template=template, **fields)
    move_campaign(campaign, CampaignStatus.SCHEDULED, action="campaign.started", data={"by": "test"})
    send_at = send_at or timezone.now() - timedelta(minutes=1)
    CampaignRecipient.objects.bulk_create(
        CampaignRecipient(campaign=campaign, contact=c, send_at=send_at) for c in contacts)
    return campaign
