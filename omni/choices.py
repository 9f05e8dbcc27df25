"""Vocabulary shared by every app: channels, purposes, urgencies and consent states.

It lives in the project package because every app, from contacts upward, speaks it.
"""
from django.db import models


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    WHATSAPP = "whatsapp", "WhatsApp"
    RCS = "rcs", "RCS"
    PUSH = "push", "Mobile push"


class Purpose(models.TextChoices):
    TRANSACTIONAL = "transactional", "Transactional"
    INFORMATIONAL = "informational", "Informational"
    MARKETING = "marketing", "Marketing"


class Urgency(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Opted in"
    REVOKED = "revoked", "Opted out"
    UNKNOWN = "unknown", "Unknown"
    # Given but not yet confirmed (double opt-in for marketing email): the gate reads it as no consent.
    PENDING = "pending", "Awaiting confirmation"


class Exemption(models.TextChoices):
    """Why a message may pass some of the gate's rules (compliance.gate.EXEMPTIONS says which).
    Only Omni's own code sets one, never the API."""
    NONE = "", "None"
    OPT_OUT_CONFIRMATION = "opt_out_confirmation", "Opt-out confirmation"
    # An agent answering within 24 hours of the customer's last message: consent and suppression
    # still apply, frequency caps and quiet hours do not.
    CONVERSATIONAL_REPLY = "conversational_reply", "Conversational reply"
    # A test a member of staff sends by hand to a test contact: consent and suppression still
    # apply, frequency caps and quiet hours do not.
    TEST_SEND = "test_send", "Test send"


# Channels addressed by a phone number rather than an email address or a device.
PHONE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP, Channel.RCS})

# Channels whose providers report that a message was opened or read (SES's open tracking,
# WhatsApp's and RCS's read receipts); an SMS is never known to be read.
OPENS_REPORTED_ON = frozenset({Channel.EMAIL, Channel.WHATSAPP, Channel.RCS})

# Higher wins when messages compete (arbitration, frequency caps).
PURPOSE_PRIORITY = {Purpose.TRANSACTIONAL: 300, Purpose.INFORMATIONAL: 200, Purpose.MARKETING: 100}


def send_queue(purpose: str, channel: str) -> str:
    """The Celery queue a delivery goes to.

    Transactional sends have lanes of their own per channel, so a marketing blast queued
    ahead of a password reset can never delay it.
    """
    lane = "transactional" if purpose == Purpose.TRANSACTIONAL else "bulk"
    return f"send.{lane}.{channel}"


SEND_QUEUES = [send_queue(p, c) for p in (Purpose.TRANSACTIONAL, Purpose.MARKETING) for c in Channel.values]
# Calls to outside systems (outbound webhooks, omni/lib/webhooks.py): a slow receiver holds up
# only the workers of this queue, never sends or journey steps.
OUTBOUND_QUEUE = "outbound"
ALL_QUEUES = ["default", "events", "journeys", "campaigns", OUTBOUND_QUEUE, *SEND_QUEUES]


class LawfulBasis(models.TextChoices):
    CONSENT = "consent", "Consent"
    CONTRACT = "contract", "Contract"
    LEGITIMATE_INTEREST = "legitimate_interest", "Legitimate interest"
    LEGAL_OBLIGATION = "legal_obligation", "Legal obligation"
