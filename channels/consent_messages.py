"""What Omni does about consent a contact expresses by text, and the messages it sends about it.

read_inbound_keyword() reads a message (compliance.keywords, over the lists staff edit) before
record_inbound_message stores it with what it read; act_on_keyword() then runs inside that
transaction. It records what the keyword means for consent (compliance.actions) for every
contact with that number, and makes at most one reply: a message with its own content (the list's reply in the contact's
language) and the idempotency key "keyword:<inbound id>", routed and gated in the same
transaction. Its send task is published once the transaction commits (routing.enqueue_sends),
so a webhook never calls a provider and a rolled-back webhook sends nothing. Where the
provider that would carry the reply answers keywords itself (Twilio's opt-out handling on that
sender), Omni records only: the contact must not get two confirmations.

send_opt_in_confirmation() answers compliance.hooks.opted_in: the first message after an SMS
opt-in confirms the program, its frequency, HELP and STOP (the START reply says all that),
with the idempotency key "optin:<consent change id>".
"""
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from compliance.actions import record_opt_back_in, record_opt_out
from compliance.keywords import START, STOP_ALL, Reading, read_keyword
from compliance.models import ConsentSource, KeywordList
from contacts.models import Contact
from omni import audit
from omni.choices import PHONE_CHANNELS, Channel, Exemption, Purpose

from .models import InboundMessage, Message, MessageSource
from .registry import provider_named
from .routing import create_message, dispatch, provider_name

# The language of replies when neither the contact's language nor the word's has one.
DEFAULT_LANGUAGE = "en"


def read_inbound_keyword(channel: str, body: str, keyword_lists: dict[str, list[str]]) -> Reading:
    """What a message on `channel` says as a keyword (STOP, STOPALL, START, HELP, or an opt-out
    word inside other text for an agent), read with the lists staff edit
    (channels.inbound_settings keeps them). Only texts carry keywords."""
    if channel not in PHONE_CHANNELS:
        return Reading()
    return read_keyword(body, keyword_lists, embedded_opt_out=settings.OMNI_KEYWORD_EMBEDDED_OPT_OUT)


def act_on_keyword(inbound: InboundMessage, reading: Reading) -> None:
    """Act on what read_inbound_keyword() read in a message stored with its keyword and
    needs_agent (see the module's docstring). Call inside the transaction that stored it, once
    per message."""
    if not (reading.keyword or reading.needs_agent):
        return
    actor_label = f"provider:{inbound.provider}"
    evidence = {"keyword": reading.keyword, "word": reading.word, "embedded": reading.embedded,
                "inbound_message": inbound.pk, "provider": inbound.provider,
                "provider_message_id": inbound.provider_message_id, "to": inbound.to_address,
                # The send it answers, so that send's campaign or journey counts the opt-out.
                "delivery_id": inbound.in_reply_to_id}
    # The number opted out, whoever it is filed under: every contact with it.
    contacts = list(Contact.objects.reachable().filter(phone=inbound.from_address).order_by("pk")) \
        if reading.keyword and inbound.from_address else []
    changes = []
    for contact in contacts:
        if reading.opts_out:
            channels = Channel.values if reading.keyword == STOP_ALL else [inbound.channel]
            changes += record_opt_out(contact, channels, ConsentSource.KEYWORD, evidence=evidence,
                                      actor_label=actor_label)
        elif reading.keyword == START:
            changes += record_opt_back_in(contact, inbound.channel, address=inbound.from_address,
                                          evidence=evidence, actor_label=actor_label)
    reply = _reply_to_keyword(inbound, reading)
    audit.record(
        "inbound.keyword", contact=inbound.contact, obj=inbound, channel=inbound.channel, actor_label=actor_label,
        reason=reading.keyword or "needs_agent",
        data={"keyword": reading.keyword, "embedded": reading.embedded, "needs_agent": reading.needs_agent,
              "contacts": [contact.pk for contact in contacts], "consent_changes": [change.pk for change in changes],
              "reply": reply.pk if reply else None},
    )


def provider_answers_keywords(channel: str, sender: str) -> bool:
    """Whether the provider that carries `channel` replies to keywords texted to `sender` itself."""
    try:
        return provider_named(provider_name(channel)).answers_keywords(channel, sender)
    except ImproperlyConfigured:
        return False  # an unknown provider answers nothing; the reply then fails like any send to it


def reply_text(kind: str, contact, word: str = "") -> str:
    """The reply of `kind` in the contact's language, else in the word's, else in English."""
    languages = [(contact.locale or "").split("-")[0].lower()]
    if word:
        languages += KeywordList.objects.languages_with(kind, word)
    languages.append(DEFAULT_LANGUAGE)
    return KeywordList.objects.reply_for(kind, [language for language in languages if language])


def _reply_to_keyword(inbound: InboundMessage, reading: Reading) -> Message | None:
    # A blocked sender's keyword still changes their consent, but nothing answers them.
    if not reading.keyword or inbound.contact is None or inbound.blocked:
        return None
    if provider_answers_keywords(inbound.channel, inbound.to_address):
        return None
    text = reply_text(reading.keyword, inbound.contact, reading.word)
    if not text:
        return None
    # An opt-out confirmation passes the opt-out it confirms (compliance.gate.EXEMPTIONS).
    exemption = Exemption.OPT_OUT_CONFIRMATION if reading.opts_out else Exemption.NONE
    # The reply joins the conversation the keyword joined (channels.conversations), if any.
    return _send_system_message(inbound.contact, inbound.channel, text, f"keyword:{inbound.pk}", exemption,
                                conversation=inbound.conversation)


def send_opt_in_confirmation(sender=None, *, change, **kwargs) -> Message | None:
    """compliance.hooks.opted_in: confirm an SMS opt-in with the START reply, once per change."""
    if change.channel != Channel.SMS:
        return None
    contact = change.contact
    text = reply_text(START, contact)
    if not text or not contact.address_for(Channel.SMS):
        return None
    return _send_system_message(contact, Channel.SMS, text, f"optin:{change.pk}", Exemption.NONE)


def _send_system_message(contact, channel: str, text: str, idempotency_key: str, exemption: str, *,
                         conversation=None) -> Message:
    """A message of Omni's own on one channel, routed now; its send goes out after commit."""
    message, created = create_message(
        contact=contact, channel_plan=[{"channel": channel}], source=MessageSource.SYSTEM,
        content=[{"channel": channel, "text_body": text}], purpose=Purpose.TRANSACTIONAL,
        idempotency_key=idempotency_key, exemption=exemption, conversation=conversation,
    )
    if created:
        dispatch(message)
    return message
