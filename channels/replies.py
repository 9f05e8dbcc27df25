"""Agents' replies: what an agent writes in a conversation goes out through the same routing and
gate as every other send.

A reply is a message with its own content (source agent, purpose informational) made by
routing.create_message and dispatched at once. The reply form's token is its idempotency key
(`reply:<token>`), so a double click sends once. Within REPLY_WINDOW of the customer's last
message a reply is conversational (Exemption.CONVERSATIONAL_REPLY): quiet hours and frequency
caps do not hold it, consent and suppression still stop it; later it is a normal send. A
refused reply sends nothing and stays in the thread; its decision row says why
(refusal_in_words). A failed one is sent again as a new message pointing at it (resend).

WhatsApp takes free text only within its 24-hour session (channels/whatsapp.py); outside it the
form offers approved templates (reply_form_options, reply_with_template).

These actions check nothing about who may act: views check the "reply to conversations"
permission (channels.reply_conversation).
"""
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from compliance import decisions
from compliance.models import Decision, DecisionOutcome
from omni import audit
from omni.choices import Channel, Exemption, Purpose
from templates.models import TemplateVersion
from templates.rendering import RenderError, contact_variables, render_variant, undefined_names

from . import conversations, routing, state, whatsapp
from .models import (
    Conversation,
    ConversationStatus,
    Delivery,
    Message,
    MessageSource,
    MessageStatus,
    SavedReply,
)
from .support_access import conversations_for

REPLY_WINDOW = timedelta(hours=24)
# Twilio refuses a longer body (error 21617); one limit on every channel keeps the form plain.
MAX_REPLY_LENGTH = 1600
EMAIL_REPLY_SUBJECT = "Re: your message"
# An agent can write first on these; push carries nothing a person answers.
CONVERSATION_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.EMAIL})
# Statuses of a reply that answers the customer: sent now, or deferred by quiet hours.
ANSWERED = frozenset({MessageStatus.QUEUED, MessageStatus.DEFERRED})
# Statuses a reply ends in without having gone out.
NOT_SENT = frozenset({MessageStatus.SUPPRESSED, MessageStatus.DEFERRED, MessageStatus.EXPIRED,
                      MessageStatus.FAILED, MessageStatus.CANCELLED})


class ReplyError(Exception):
    """A reply that cannot be sent as asked; str() says why, in words for the agent."""


class MissingVariables(ReplyError):
    """A saved reply or template uses variables the contact lacks; `names` lists each one."""

    def __init__(self, names: list[str]):
        self.names = list(names)
        super().__init__(f"The contact has no value for {', '.join(self.names)}: write the text yourself or fill "
                         "in the contact's profile first.")


@dataclass(frozen=True)
class ReplyOptions:
    """What the reply form offers now, and why."""

    free_text_allowed: bool
    why: str
    templates: list = field(default_factory=list)
    saved_replies: list = field(default_factory=list)


def is_conversational(conversation: Conversation, now=None) -> bool:
    """Whether a reply now is within REPLY_WINDOW of the customer's last message."""
    now = now or timezone.now()
    last = conversation.last_inbound_at
    return last is not None and now - last <= REPLY_WINDOW


def reply(conversation: Conversation, *, agent, body: str, form_token: str, now=None) -> Message:
    """Send what an agent wrote. Returns the message: queued when the gate let it through, else
    suppressed or deferred with its decision saying why (refusal_in_words). The same form token
    again returns the same message and sends nothing more. ReplyError for bad input."""
    now = now or timezone.now()
    body = _clean_body(body)
    already = _already_made(form_token, conversation)
    if already is not None:
        return already
    _check_not_closed(conversation)
    _check_free_text_allowed(conversation, now)
    return _send(conversation, agent=agent, form_token=form_token, now=now, content=_content(conversation.channel, body))


def reply_with_template(conversation: Conversation, *, agent, template: TemplateVersion, form_token: str,
                        now=None) -> Message:
    """Send a published template version (for WhatsApp outside its 24-hour session: an approved
    content template). Marketing templates are not replies; variables the contact lacks are
    named before anything is made (MissingVariables)."""
    now = now or timezone.now()
    already = _already_made(form_token, conversation)
    if already is not None:
        return already
    _check_not_closed(conversation)
    if not isinstance(template, TemplateVersion) or template.pk is None:
        raise ReplyError("Choose a published template version.")
    if template.purpose == Purpose.MARKETING:
        raise ReplyError(f"{template} is a marketing template: it cannot be sent as a reply.")
    channel = conversation.channel
    variant = template.variant_for(channel, conversation.contact.locale)
    if variant is None:
        raise ReplyError(f"{template} has nothing written for {Channel(channel).label}.")
    if channel == Channel.WHATSAPP and not variant.get("provider_template_id"):
        raise ReplyError(f"{template} has no approved WhatsApp template (content SID) to send outside the "
                         "24-hour window.")
    _render_for(variant, conversation.contact)
    return _send(conversation, agent=agent, form_token=form_token, now=now, template_version=template)


def resend(message: Message, *, agent, form_token: str, now=None) -> Message:
    """Send a failed reply again, as a new message linked to it (resent_from); the failed one
    stays failed. The form token names the page, so the idempotency key holds the failed reply's
    id too: two failed replies sent again from one page are two messages."""
    now = now or timezone.now()
    if message.source != MessageSource.AGENT or message.conversation_id is None:
        raise ReplyError("Only an agent's reply in a conversation can be sent again from here.")
    conversation = message.conversation
    form_token = f"{form_token}:{message.pk}"
    already = _already_made(form_token, conversation)
    if already is not None:
        return already
    if message.status != MessageStatus.FAILED:
        raise ReplyError(f"Only a failed reply can be sent again; this one is {message.get_status_display().lower()}.")
    _check_not_closed(conversation)
    if message.content is not None:
        _check_free_text_allowed(conversation, now)
    with transaction.atomic():
        # Once only: the failed reply stays failed and keeps its "Send again", so a page drawn
        # again (a new token) or a second agent would send the customer the text twice. Its
        # row locked (messages first: channels/state.py's order), two at once take turns.
        state.lock_message(message.pk)
        earlier = message.resends.order_by("pk").values_list("pk", flat=True).first()
        if earlier is not None:
            raise ReplyError(f"This reply was already sent again (message {earlier}): if that one failed too, "
                             "send it again instead.")
        return _send(conversation, agent=agent, form_token=form_token, now=now, content=message.content,
                     template_version=message.template_version, resent_from=message)


def start_conversation(contact, channel: str, *, agent, body: str, form_token: str,
                       now=None) -> tuple[Conversation, Message]:
    """An agent's first message to a contact: opens a conversation on `channel` (waiting on the
    customer, assigned to the agent), or continues the one not closed, and sends `body` through
    the same gate as any reply."""
    now = now or timezone.now()
    body = _clean_body(body)
    already = _already_made(form_token)
    if already is not None:
        return already.conversation, already
    if channel not in CONVERSATION_CHANNELS:
        raise ReplyError(f"Conversations are held on {', '.join(sorted(CONVERSATION_CHANNELS))}, not {channel}.")
    if contact.erased_at is not None:
        raise ReplyError("This contact's personal data was erased: nobody can be written to.")
    if not contact.address_for(channel):
        raise ReplyError(f"{contact} has no address for {Channel(channel).label}.")
    with transaction.atomic():
        # Contacts are locked before conversations (channels/state.py's order; dispatch locks it too).
        state.lock_contacts({contact.pk})
        conversation = _open_conversation(contact, channel, agent, now)
        _check_free_text_allowed(conversation, now)
        return conversation, _send(conversation, agent=agent, form_token=form_token, now=now,
                                   content=_content(channel, body))


def render_saved_reply(saved_reply: SavedReply, contact) -> str:
    """A saved reply's text for the contact, rendered strictly (templates/rendering.py);
    MissingVariables names every variable the contact lacks."""
    return _render_for({"text_body": saved_reply.body}, contact)["text_body"]


def reply_form_options(conversation: Conversation, now=None) -> ReplyOptions:
    """Whether the agent may write free text now, why (or why not), the templates to send
    instead, and the saved replies for the conversation's channel."""
    now = now or timezone.now()
    saved = list(SavedReply.objects.filter(Q(channel="") | Q(channel=conversation.channel)))
    if conversation.status == ConversationStatus.CLOSED:
        return ReplyOptions(False, "The conversation is closed: start a new one to write to the contact.", [], saved)
    if conversation.channel == Channel.WHATSAPP and not whatsapp.in_whatsapp_session(conversation.contact_id, now):
        return ReplyOptions(False, "WhatsApp takes free text only within 24 hours of the customer's last message: "
                                   "send an approved template.", approved_templates(conversation.channel), saved)
    if is_conversational(conversation, now):
        why = "The customer wrote within 24 hours: quiet hours and frequency caps do not hold this reply."
    else:
        why = "The customer last wrote more than 24 hours ago: quiet hours and frequency caps apply."
    return ReplyOptions(True, why, [], saved)


def approved_templates(channel: str) -> list[TemplateVersion]:
    """The latest published version of every template that is not marketing and has something
    for `channel` (for WhatsApp: an approved content template), by template name."""
    latest = TemplateVersion.objects.filter(template=OuterRef("template")).order_by("-number").values("pk")[:1]
    versions = (TemplateVersion.objects.filter(pk=Subquery(latest)).exclude(purpose=Purpose.MARKETING)
                .select_related("template").order_by("template__name"))
    return [version for version in versions
            if any(variant["channel"] == channel and (channel != Channel.WHATSAPP or variant.get("provider_template_id"))
                   for variant in version.variants)]


def refusal_in_words(message: Message) -> str:
    """Why a reply was not sent, in words, from its latest refusing decision ("" for one that
    went out or is still on its way). A query or two: a page of many reads them for all at once
    and asks refusal_from."""
    if message.status not in NOT_SENT:
        return ""
    deliveries = list(Delivery.objects.filter(message=message).exclude(error_code="")) \
        if message.status == MessageStatus.FAILED else []
    decision = (Decision.objects.filter(message_id=message.pk).exclude(outcome=DecisionOutcome.ALLOW)
                .order_by("-decided_at", "-pk").first())
    return refusal_from(message, decision, deliveries)


def refusal_from(message: Message, decision: Decision | None, deliveries) -> str:
    """refusal_in_words from what the caller has read: the message's latest refusing decision
    (None if it has none) and its deliveries."""
    if message.status not in NOT_SENT:
        return ""
    if message.status == MessageStatus.FAILED:
        failed = max((delivery for delivery in deliveries if delivery.error_code), key=lambda d: d.pk, default=None)
        if failed is not None:
            text = failed.error_message
            return f"The provider could not deliver it ({failed.error_code}{': ' + text if text else ''})."
    if decision is not None:
        return decisions.in_words(decision)
    if message.status == MessageStatus.CANCELLED:
        return "It was cancelled before it went out."
    return f"It was not sent ({message.status_reason or message.get_status_display().lower()})."


# --- the steps ------------------------------------------------------------------------------------

def _send(conversation: Conversation, *, agent, form_token: str, now, content=None, template_version=None,
          resent_from=None) -> Message:
    exemption = Exemption.CONVERSATIONAL_REPLY if is_conversational(conversation, now) else Exemption.NONE
    with transaction.atomic():
        message, created = routing.create_message(
            contact=conversation.contact, channel_plan=[{"channel": conversation.channel}], source=MessageSource.AGENT,
            content=content, template_version=template_version,
            # Informational whatever a template says: a transactional one would pass a contact that
            # staff paused, which no agent's reply may.
            purpose=Purpose.INFORMATIONAL,
            conversation=conversation, agent=agent, idempotency_key=_idempotency_key(form_token), exemption=exemption,
            resent_from=resent_from,
        )
        if not created:
            # The same form posted twice at once: the other request made (and sends) it.
            return _same_conversation(message, conversation)
        routing.dispatch(message, now=now)
        Conversation.objects.filter(pk=conversation.pk, last_activity_at__lt=now).update(last_activity_at=now)
        if message.status in ANSWERED and conversation.last_inbound_at is not None:
            # The gate let it go, now or after quiet hours: the first one answers the customer (the
            # service level's clock measures the agent, not the contact's night).
            conversations.record_response(conversation, now)
        audit.record("conversation.resent" if resent_from else "conversation.replied", actor=agent,
                     contact_id=conversation.contact_id, obj=message, channel=conversation.channel,
                     reason=message.status_reason, occurred_at=now,
                     data={"conversation": conversation.pk, "status": message.status, "exemption": exemption,
                           "template_version": template_version.pk if template_version else None,
                           "resent_from": resent_from.pk if resent_from else None})
        return message


def _open_conversation(contact, channel: str, agent, now) -> Conversation:
    """The contact's conversation on `channel` that is not closed, or a new one (at most one
    such per contact and channel: the constraint one_unclosed_conversation_per_channel)."""
    current = Conversation.objects.filter(contact=contact, channel=channel).exclude(
        status=ConversationStatus.CLOSED).first()
    if current is not None:
        return _theirs_to_continue(current, agent)
    try:
        with transaction.atomic():
            conversation = Conversation.objects.create(contact=contact, channel=channel, assignee=agent, opened_at=now,
                                                       last_activity_at=now)
    except IntegrityError:
        # Someone else (the customer writing in, another agent) opened it meanwhile.
        return _theirs_to_continue(
            Conversation.objects.exclude(status=ConversationStatus.CLOSED).get(contact=contact, channel=channel), agent)
    audit.record("conversation.started", actor=agent, contact=contact, obj=conversation, channel=channel,
                 occurred_at=now, data={"assignee": agent.pk if agent else None})
    # The agent wrote first: it waits on the customer, and closes itself if they never answer.
    conversations.set_waiting(conversation, actor=agent, now=now)
    return conversation


def _theirs_to_continue(conversation: Conversation, agent) -> Conversation:
    """The contact's conversation that is not closed, if the agent may see it (support_access:
    an agent limited to their queues may not write into anyone else's)."""
    if agent is not None and not conversations_for(agent).filter(pk=conversation.pk).exists():
        raise ReplyError(f"This contact already has a conversation on {Channel(conversation.channel).label} in a "
                         "queue you do not work in: ask its agent or a supervisor to reply there.")
    return conversation


def _render_for(variant: dict, contact) -> dict:
    variables = contact_variables(contact)
    try:
        return render_variant(variant, variables)
    except RenderError as error:
        names = [name for part in ("subject", "text_body", "title", "provider_variables") if variant.get(part)
                 for name in undefined_names(variant[part], variables)]
        if names:
            raise MissingVariables(list(dict.fromkeys(names))) from error
        raise ReplyError(f"The text cannot be filled in for the contact: {error}") from error


def _clean_body(body) -> str:
    body = (body or "").strip()
    if not body:
        raise ReplyError("Write something to send.")
    if len(body) > MAX_REPLY_LENGTH:
        raise ReplyError(f"A reply is at most {MAX_REPLY_LENGTH:,} characters; this one has {len(body):,}.")
    return body


def _content(channel: str, body: str) -> list[dict]:
    variant = {"channel": channel, "text_body": body}
    if channel == Channel.EMAIL:
        variant["subject"] = EMAIL_REPLY_SUBJECT
    return [variant]


def _idempotency_key(form_token: str) -> str:
    token = (form_token or "").strip()
    if not token or len(token) > 200:
        raise ReplyError("The form has lost its token: reload the page and send again.")
    return f"reply:{token}"


def _already_made(form_token: str, conversation: Conversation | None = None) -> Message | None:
    """The message this form already made (a double click), or None."""
    message = (Message.objects.filter(idempotency_key=_idempotency_key(form_token))
               .select_related("contact", "conversation").first())
    return None if message is None else _same_conversation(message, conversation)


def _same_conversation(message: Message, conversation: Conversation | None) -> Message:
    if message.source != MessageSource.AGENT or (conversation is not None and message.conversation_id != conversation.pk):
        raise ReplyError("This form was already used for another message: reload the page and send again.")
    return message


def _check_not_closed(conversation: Conversation) -> None:
    if conversation.status == ConversationStatus.CLOSED:
        raise ReplyError("The conversation is closed: start a new one to write to the contact.")


def _check_free_text_allowed(conversation: Conversation, now) -> None:
    if conversation.channel == Channel.WHATSAPP and not whatsapp.in_whatsapp_session(conversation.contact_id, now):
        raise ReplyError("WhatsApp takes free text only within 24 hours of the customer's last message: send an "
                         "approved template.")
