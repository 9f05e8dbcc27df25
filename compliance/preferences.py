"""What a contact does from a link in an email: unsubscribe in one click, set their
preferences, confirm a double opt-in; and the expiry of double opt-ins never confirmed.

Every function here takes a token (compliance/links.py), refuses a forged, expired or replayed
one with LinkRefused before anything is written, and records consent through
record_consent_change with the delivery and message the link came with in the evidence.
"""
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from contacts.actions import set_preferred_channel
from contacts.models import Contact
from omni.choices import Channel, ConsentStatus, Purpose

from . import links
from .actions import record_consent_change
from .links import LinkRefused
from .models import Consent, ConsentChange, ConsentSource, ConsentTextKey

# Purposes a contact chooses on the preference page. Transactional messages (a receipt, a
# password reset) are part of the service and are not offered for opt-out there.
PAGE_PURPOSES = (Purpose.MARKETING, Purpose.INFORMATIONAL)
# Pending consents expired per run of expire_double_opt_ins_task.
EXPIRY_BATCH = 500


@dataclass(frozen=True)
class Scope:
    """One channel and purpose on the preference page, and whether the contact gets it now."""

    channel: str
    purpose: str
    status: str

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.purpose}"

    @property
    def receiving(self) -> bool:
        """Checked on the page: opted in (or awaiting confirmation), or, for purposes that need
        no opt-in, not opted out."""
        if self.status in (ConsentStatus.GRANTED, ConsentStatus.PENDING):
            return True
        return self.status == ConsentStatus.UNKNOWN and self.purpose != Purpose.MARKETING

    @property
    def pending(self) -> bool:
        return self.status == ConsentStatus.PENDING

    def label(self) -> str:
        return f"{Purpose(self.purpose).label} by {Channel(self.channel).label}"


def scopes_of(contact: Contact) -> list[Scope]:
    """The channels the contact can be reached on (or has a consent for), each page purpose."""
    statuses = {(c, p): s for c, p, s in contact.consents.values_list("channel", "purpose", "status")}
    reachable = {channel for channel in Channel.values if contact.address_for(channel)}
    if contact.devices.filter(enabled=True).exists():
        reachable.add(Channel.PUSH)
    reachable |= {c for c, p in statuses if p in PAGE_PURPOSES}
    return [Scope(channel, purpose, statuses.get((channel, purpose), ConsentStatus.UNKNOWN))
            for channel in Channel.values if channel in reachable for purpose in PAGE_PURPOSES]


def consent_text_shown(key: str, version: int | None) -> dict:
    """The evidence naming the consent text a page showed (none if it showed none)."""
    return {"consent_text": {"key": key, "version": version}} if version else {}


def _evidence(link: links.Link, via: str, request_facts: dict) -> dict:
    return {**link.evidence(), "via": via, **request_facts,
            **consent_text_shown(ConsentTextKey.PREFERENCE_PAGE, link.text_version)}


def unsubscribe_one_click(token: str, request_facts: dict) -> ConsentChange:
    """The List-Unsubscribe-Post one-click: revoke marketing email at once. Each link works once."""
    link = links.read_unsubscribe_token(token)
    with transaction.atomic():
        links.spend(links.token_key("one-click", token), link.contact.pk)
        return record_consent_change(
            link.contact, Channel.EMAIL, Purpose.MARKETING, ConsentStatus.REVOKED, ConsentSource.UNSUBSCRIBE_LINK,
            evidence=_evidence(link, "one_click", request_facts), actor_label="unsubscribe:one-click",
        )


@dataclass
class Saved:
    changes: list[ConsentChange]
    preferred_channel_changed: bool


def save_preferences(token: str, *, receive: set[str], everything: bool, preferred_channel: str,
                     request_facts: dict) -> Saved:
    """Apply one submitted preference form (single use): for each scope on the page, grant what
    is ticked and not received, revoke what is received and not ticked; "everything" revokes
    every scope on the page and leaves the preferred channel as it was; otherwise the preferred
    channel is set ("" for none)."""
    link = links.read_form_token(token)
    if preferred_channel and preferred_channel not in Channel.values:
        raise ValueError(f"Unknown channel {preferred_channel!r}.")
    via = "unsubscribe_everything" if everything else "preference_page"
    evidence = _evidence(link, via, request_facts)
    changes = []
    with transaction.atomic():
        links.spend(f"form:{link.nonce}", link.contact.pk)
        contact = Contact.objects.select_for_update().get(pk=link.contact.pk)
        for scope in scopes_of(contact):
            if everything:
                wanted = None if scope.status == ConsentStatus.REVOKED else ConsentStatus.REVOKED
            elif scope.key in receive:
                wanted = None if scope.receiving else ConsentStatus.GRANTED
            else:
                wanted = ConsentStatus.REVOKED if scope.receiving else None
            if wanted:
                changes.append(record_consent_change(
                    contact, scope.channel, scope.purpose, wanted, ConsentSource.PREFERENCE_PAGE,
                    evidence=evidence, actor_label="preference-page"))
        moved = not everything and set_preferred_channel(contact, preferred_channel, actor_label="preference-page")
    return Saved(changes, moved)


def pending_change_of(link: links.Link) -> ConsentChange:
    """The pending consent change a confirmation link names, or LinkRefused."""
    change = ConsentChange.objects.filter(pk=link.change_id, contact=link.contact,
                                          status=ConsentStatus.PENDING).first()
    if change is None:
        raise LinkRefused("invalid")
    return change


def confirm_double_opt_in(token: str, request_facts: dict, *, text_version: int | None = None) -> ConsentChange:
    """Grant the consent a double opt-in link names, if it is still the pending one.
    `text_version`: the version of the double opt-in consent text the page showed."""
    link = links.read_confirmation_token(token)
    pending = pending_change_of(link)
    with transaction.atomic():
        links.spend(f"confirm:{pending.pk}", link.contact.pk)
        consent = (Consent.objects.select_for_update()
                   .filter(contact=link.contact, channel=pending.channel, purpose=pending.purpose).first())
        if consent is None or consent.last_change_id != pending.pk or consent.status != ConsentStatus.PENDING:
            # Revoked, expired or granted another way since: the link must not overturn that.
            raise LinkRefused("superseded")
        return record_consent_change(
            link.contact, pending.channel, pending.purpose, ConsentStatus.GRANTED, ConsentSource.DOUBLE_OPT_IN,
            evidence={"double_opt_in": "confirmed", "pending_change_id": pending.pk, **request_facts,
                      **consent_text_shown(ConsentTextKey.DOUBLE_OPT_IN, text_version)},
            lawful_basis=pending.lawful_basis, actor_label="double-opt-in:confirmed",
        )


def expire_double_opt_ins(now=None, limit: int = EXPIRY_BATCH) -> int:
    """Put consents pending for longer than OMNI_DOUBLE_OPT_IN_DAYS back where they were before
    the grant (source DOUBLE_OPT_IN, evidence "expired"). Returns how many expired.

    The gate reads a pending consent as none whether or not this has run, and the confirmation
    link expires at the same age, so this only tidies the current state and its history.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.OMNI_DOUBLE_OPT_IN_DAYS)
    stale = list(Consent.objects.filter(status=ConsentStatus.PENDING, updated_at__lt=cutoff)
                 .select_related("contact", "last_change").order_by("updated_at")[:limit])
    expired = 0
    for consent in stale:
        with transaction.atomic():
            locked = Consent.objects.select_for_update().get(pk=consent.pk)
            if locked.status != ConsentStatus.PENDING or locked.last_change_id != consent.last_change_id:
                continue  # confirmed or changed meanwhile
            requested = (consent.last_change.evidence or {}).get("double_opt_in") or {}
            previous = requested.get("previous_status", ConsentStatus.UNKNOWN)
            if previous not in (ConsentStatus.UNKNOWN, ConsentStatus.REVOKED):
                previous = ConsentStatus.UNKNOWN
            record_consent_change(
                consent.contact, consent.channel, consent.purpose, previous, ConsentSource.DOUBLE_OPT_IN,
                evidence={"double_opt_in": "expired", "pending_change_id": consent.last_change_id},
                actor_label="double-opt-in:expired", occurred_at=now,
            )
            expired += 1
    return expired


def opt_outs_by_message(message_ids) -> dict[int, int]:
    """How many contacts opted out of something through each message's links (one-click,
    preference page), by message id."""
    counts: dict[int, int] = {}
    for message_id, _ in set(ConsentChange.objects.filter(status=ConsentStatus.REVOKED,
                                                          evidence__message_id__in=list(message_ids))
                             .values_list("evidence__message_id", "contact_id")):
        counts[message_id] = counts.get(message_id, 0) + 1
    return counts
