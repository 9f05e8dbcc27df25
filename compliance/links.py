"""Signed links a contact follows without logging in: unsubscribe and preferences, and the
double opt-in confirmation.

Each token is a django.core.signing TimestampSigner object under its own salt, so one kind can
never be passed off as another, and names what it was made for: an unsubscribe link names the
contact and the delivery (and message) it came with; a preference form adds a one-time nonce;
a confirmation names the pending consent change. Tokens expire (settings), and each use that
changes consent is spent once (SpentLink): a forged, expired or replayed token changes nothing
and raises LinkRefused saying which.

Channels builds the List-Unsubscribe headers from here; compliance/views.py reads the tokens.
"""
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse

from contacts.models import Contact

from .models import SpentLink

LINK_SALT = "omni.compliance.unsubscribe-link"
FORM_SALT = "omni.compliance.preference-form"
CONFIRM_SALT = "omni.compliance.double-opt-in"
SHOWN_TEXT_SALT = "omni.compliance.consent-text-shown"
# A preference form is filled in soon after the page is opened; the link itself lives longer.
FORM_MAX_AGE = timedelta(days=1)

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"


class LinkRefused(Exception):
    """A token that must change nothing. `why`: invalid, expired, used or superseded."""

    MESSAGES = {
        "invalid": "This link is not valid. It may have been mistyped or altered.",
        "expired": "This link has expired.",
        "used": "This link or form was already used.",
        "superseded": "This confirmation is no longer needed: your choice was changed since it was sent.",
    }

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why

    @property
    def message(self) -> str:
        return self.MESSAGES[self.why]


@dataclass(frozen=True)
class Link:
    """What a valid token names."""

    contact: Contact
    delivery_id: int | None = None
    message_id: int | None = None
    nonce: str = ""
    change_id: int | None = None
    # The version of the consent text the page showed (compliance.models.ConsentText).
    text_version: int | None = None

    def evidence(self) -> dict:
        """The ids a consent change made from this link keeps, so a campaign can count its opt-outs."""
        return {"delivery_id": self.delivery_id, "message_id": self.message_id}


def _sign(salt: str, payload: dict) -> str:
    return signing.TimestampSigner(salt=salt).sign_object(payload)


def _read(token: str, salt: str, max_age: timedelta) -> dict:
    try:
        payload = signing.TimestampSigner(salt=salt).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired:
        raise LinkRefused("expired")
    except (signing.BadSignature, ValueError):
        raise LinkRefused("invalid")
    if not isinstance(payload, dict):
        raise LinkRefused("invalid")
    return payload


def _contact(payload: dict) -> Contact:
    contact = Contact.objects.filter(pk=payload.get("c"), erased_at__isnull=True).first()
    if contact is None:
        raise LinkRefused("invalid")
    return contact


def link_max_age() -> timedelta:
    return timedelta(days=settings.OMNI_UNSUBSCRIBE_LINK_DAYS)


def unsubscribe_token(contact_id: int, delivery_id: int | None, message_id: int | None) -> str:
    return _sign(LINK_SALT, {"c": contact_id, "d": delivery_id, "m": message_id})


def read_unsubscribe_token(token: str) -> Link:
    payload = _read(token, LINK_SALT, link_max_age())
    return Link(_contact(payload), payload.get("d"), payload.get("m"))


def public_url(path: str) -> str:
    return f"{settings.OMNI_PUBLIC_URL}{path}"


def unsubscribe_url(contact_id: int, delivery_id: int, message_id: int) -> str:
    """The signed https unsubscribe link of one delivery: in its List-Unsubscribe header and, as
    `unsubscribe_url`, in an email's body; an opt-out made from it counts against that delivery."""
    return _unsubscribe_url(unsubscribe_token(contact_id, delivery_id, message_id))


def _unsubscribe_url(token: str) -> str:
    return public_url(reverse("compliance:unsubscribe", args=[token]))


def list_unsubscribe_headers(contact_id: int, delivery_id: int, message_id: int) -> dict[str, str]:
    """List-Unsubscribe (the signed https link, and a mailto: where OMNI_UNSUBSCRIBE_MAILTO is set)
    and List-Unsubscribe-Post for one-click unsubscribe (RFC 8058)."""
    token = unsubscribe_token(contact_id, delivery_id, message_id)
    targets = [f"<{_unsubscribe_url(token)}>"]
    if settings.OMNI_UNSUBSCRIBE_MAILTO:
        # The subject carries the same signed token: whoever reads that mailbox can act on it
        # without trusting the sender's From address.
        targets.append(f"<mailto:{settings.OMNI_UNSUBSCRIBE_MAILTO}?subject=unsubscribe%20{token}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK_BODY}


def form_token(link: Link, text_version: int | None = None) -> str:
    """A fresh single-use token for one preference form, made each time the page is shown; it
    names the version of the consent text the page shows, so the consent keeps what was read."""
    return _sign(FORM_SALT, {"c": link.contact.pk, "d": link.delivery_id, "m": link.message_id,
                             "n": secrets.token_urlsafe(16), "t": text_version})


def read_form_token(token: str) -> Link:
    payload = _read(token, FORM_SALT, FORM_MAX_AGE)
    if not payload.get("n"):
        raise LinkRefused("invalid")
    version = payload.get("t")
    return Link(_contact(payload), payload.get("d"), payload.get("m"), nonce=payload["n"],
                text_version=version if isinstance(version, int) else None)


def shown_text_token(text_version: int | None) -> str:
    """The signed version of the consent text a confirmation page showed, posted back with it."""
    return _sign(SHOWN_TEXT_SALT, {"t": text_version})


def read_shown_text_token(token: str) -> int | None:
    """The version a confirmation page signed; None for a page that showed no text. A forged
    value is refused: the evidence must not name a text that was not shown."""
    if not token:
        return None
    # As long as the confirmation link itself: a page left open is still confirmed.
    version = _read(token, SHOWN_TEXT_SALT, timedelta(days=settings.OMNI_DOUBLE_OPT_IN_DAYS)).get("t")
    return version if isinstance(version, int) else None


def confirmation_token(contact_id: int, change_id: int) -> str:
    return _sign(CONFIRM_SALT, {"c": contact_id, "x": change_id})


def confirmation_url(contact_id: int, change_id: int) -> str:
    return public_url(reverse("compliance:confirm", args=[confirmation_token(contact_id, change_id)]))


def read_confirmation_token(token: str) -> Link:
    # The link lives as long as the pending consent: after that it has expired either way.
    payload = _read(token, CONFIRM_SALT, timedelta(days=settings.OMNI_DOUBLE_OPT_IN_DAYS))
    if not isinstance(payload.get("x"), int):
        raise LinkRefused("invalid")
    return Link(_contact(payload), change_id=payload["x"])


def spend(key: str, contact_id: int | None) -> None:
    """Mark a single-use key used, inside the caller's transaction; LinkRefused("used") if it was."""
    try:
        with transaction.atomic():
            SpentLink.objects.create(key=key, contact_id=contact_id)
    except IntegrityError:
        raise LinkRefused("used")


def token_key(kind: str, token: str) -> str:
    return f"{kind}:{hashlib.sha256(token.encode()).hexdigest()}"
