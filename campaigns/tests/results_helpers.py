"""Campaigns sending with real messages and deliveries, for the A/B test and auto-pause tests.

The start (campaigns/campaign_start.py) and the fan-out are other parts' work; these build the
rows they would leave: recipients with their variants, messages and deliveries as a send leaves
them. What happens to the sends afterwards goes through the real paths (provider reports, the
unsubscribe link, inbound STOP)."""
from datetime import timedelta

from channels.models import Delivery, DeliveryStatus, Message, MessageSource, MessageStatus
from contacts.models import Contact
from templates.actions import latest_versions

from campaigns.campaign_state import move_campaign
from campaigns.models import Campaign, CampaignRecipient, CampaignStatus, CampaignVariant, RecipientOutcome


def sending_campaign(template, now, *, variants=(("A", 50), ("B", 50)), test_ends_in=timedelta(minutes=-1),
                     **fields) -> Campaign:
    """A campaign that started, its test period ending at now + test_ends_in."""
    campaign = Campaign.objects.create(name=fields.pop("name", "Spring sale"), template=template,
                                       test_period=timedelta(hours=4), **fields)
    version = latest_versions([template.pk])[template.pk]
    for position, (name, weight) in enumerate(variants):
        CampaignVariant.objects.create(campaign=campaign, name=name, template=template, weight=weight,
                                       position=position, template_version=version)
    move_campaign(campaign, CampaignStatus.SENDING, action="campaign.started",
                  fields={"started_at": now, "test_ends_at": now + test_ends_in if len(variants) > 1 else None})
    return campaign


def make_contacts(prefix: str, count: int, *, channel="email") -> list[Contact]:
    return Contact.objects.bulk_create([
        Contact(external_id=f"{prefix}-{i}", first_name=f"{prefix.title()} {i}",
                **({"email": f"{prefix}-{i}@example.com"} if channel == "email" else
                   {"phone": f"+1415555{i:04d}"}))
        for i in range(count)])


def sent_messages(contacts, *, source=MessageSource.CAMPAIGN, template_version, channel="email", sent_at,
                  key: str) -> list[Delivery]:
    """One message per contact with its delivery, as the send worker leaves them: sent."""
    messages = Message.objects.bulk_create([
        Message(contact=contact, purpose="marketing", template_version=template_version, source=source,
                channel_plan=[{"channel": channel}], status=MessageStatus.SENT, created_at=sent_at,
                idempotency_key=f"{key}:{contact.pk}")
        for contact in contacts])
    return Delivery.objects.bulk_create([
        Delivery(message=message, contact=contact, channel=channel, provider="sandbox",
                 to_address=contact.email if channel == "email" else contact.phone, status=DeliveryStatus.SENT,
                 provider_message_id=f"sandbox-{message.pk}", queued_at=sent_at, sent_at=sent_at)
        for message, contact in zip(messages, contacts)])


def send_test_share(campaign: Campaign, variant: CampaignVariant, contacts, now, *, channel="email") -> list[Delivery]:
    """Recipients of the test share on `variant`, each sent one message on `channel`."""
    deliveries = sent_messages(contacts, template_version=variant.template_version, sent_at=now, channel=channel,
                               key=f"campaign:{campaign.pk}:{variant.pk}")
    CampaignRecipient.objects.bulk_create([
        CampaignRecipient(campaign=campaign, contact_id=d.contact_id, variant=variant, in_test=True,
                          outcome=RecipientOutcome.SENT, message_id=d.message_id, send_at=now, decided_at=now)
        for d in deliveries])
    return deliveries


def waiting_rest(campaign: Campaign, contacts) -> None:
    """The rest of the audience, waiting for the winner: no variant, no send time."""
    CampaignRecipient.objects.bulk_create([
        CampaignRecipient(campaign=campaign, contact=contact, in_test=False) for contact in contacts])
