"""Demo data for `make run`: staff users for each role, contacts with consent, two templates,
the active "Welcome" journey (owned by the marketer, whose request for approval the approver
granted), a "signed_up" event per contact so the journey fires, and an SMS
question from Bob, so the support inbox has a conversation whatever the journey sends.

Safe to run any number of times: it creates what is missing and changes nothing that exists
(an edited contact, template or journey is left as the user made it). Passwords are generated
once and kept in VAR_DIR/demo-logins.json (never committed), so later runs print the same ones.
"""
import json
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from campaigns.actions import activate_journey, draft_snapshot, journey_needs_approval
from campaigns.journey_approval import approve_journey, request_journey_approval
from campaigns.models import Journey, JourneyStatus, JourneyStep, OnReply, StepKind, TriggerType
from channels.provider_reports import record_inbound_message
from compliance.actions import record_consent_change
from compliance.models import Consent, ConsentSource, ConsentStatus, LawfulBasis
from contacts.ingest import ingest_event
from contacts.models import Contact, LifecycleStage
from omni.choices import Channel, Purpose
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

ADMIN_URL = "http://127.0.0.1:8000/admin/"
OUTBOX_URL = "http://127.0.0.1:8000/admin/channels/outboxmessage/"
INBOX_URL = "http://127.0.0.1:8000/admin/inbox/"

# username -> (group, is_superuser)
DEMO_USERS = {
    "admin": (None, True),
    "marketer": ("Marketers", False),
    "support": ("Support agents", False),
    "compliance": ("Compliance", False),
    # Approves what the marketer asks to send (journeys with marketing sends need it by default).
    "approver": ("Marketing approvers", False),
}

# The sandbox reads the address: "+open" simulates an open, "+click" a click, and Twilio's
# magic number +15005550009 comes back undelivered. Erin opted out of SMS marketing, so her
# SMS step is suppressed by the gate (and audited) instead of sent.
DEMO_CONTACTS = [
    {"external_id": "demo-alice", "first_name": "Alice", "last_name": "Archer", "email": "alice+open@example.com",
     "phone": "+14155550101", "timezone": "America/Los_Angeles", "country": "US"},
    {"external_id": "demo-bob", "first_name": "Bob", "last_name": "Baker", "email": "bob@example.com",
     "phone": "+14155550102", "timezone": "America/New_York", "country": "US"},
    {"external_id": "demo-carol", "first_name": "Carol", "last_name": "Chen", "email": "carol+click@example.com",
     "phone": "+14155550103", "timezone": "America/Chicago", "country": "US"},
    {"external_id": "demo-dave", "first_name": "Dave", "last_name": "Diaz", "email": "dave@example.com",
     "phone": "+15005550009", "timezone": "America/Denver", "country": "US"},
    {"external_id": "demo-erin", "first_name": "Erin", "last_name": "Evans", "email": "erin@example.com",
     "phone": "+14155550105", "timezone": "Europe/Paris", "country": "US"},
]
SMS_MARKETING_OPT_OUTS = {"demo-erin"}
CONSENT_EVIDENCE = {"note": "demo data"}

DEMO_TEMPLATES = [
    {
        "key": "welcome-email",
        "name": "Welcome email",
        "variant": {
            "channel": Channel.EMAIL,
            "subject": "Welcome, {{ first_name }}!",
            "preheader": "Your trial is ready.",
            "text_body": (
                "Hi {{ first_name }},\n\n"
                "Thanks for signing up. Your trial is ready: have a look around.\n\n"
                "The Omni demo team"
            ),
            "html_body": (
                "<p>Hi {{ first_name }},</p>\n"
                "<p>Thanks for signing up. Your trial is ready: have a look around.</p>\n"
                "<p>The Omni demo team</p>"
            ),
        },
    },
    {
        "key": "welcome-sms",
        "name": "Welcome SMS",
        "variant": {
            "channel": Channel.SMS,
            # Plain GSM-7 text under 160 characters: one SMS segment.
            "text_body": "Hi {{ first_name }}, welcome to Omni! Your trial is ready. Reply STOP to opt out.",
        },
    },
]

WAIT_SECONDS = 20
SIGNUP_EVENT = "signed_up"

# Bob writes in at once, through the path a provider's webhook takes (the sandbox's id keeps it
# to one message however often the command runs).
CUSTOMER_QUESTION = {"external_id": "demo-bob", "provider_message_id": "demo-bob-question",
                     "body": "Hi, my trial page says it ends tomorrow but I only signed up today. Can you check?"}


def ownership(*, objective: str, stage: str, owner: str = "marketer") -> dict:
    """What a demo journey says about itself, as activation asks: its owner (a demo user), objective
    and lifecycle stage (by key); the goal event is the journey's own."""
    # get_or_create: the stages come from a migration, and a database emptied since (a test's) lacks them.
    lifecycle_stage, _ = LifecycleStage.objects.get_or_create(key=stage, defaults={"name": stage.capitalize()})
    return {"owner": get_user_model().objects.get(username=owner), "objective": objective,
            "lifecycle_stage": lifecycle_stage}


def approve_and_activate(journey: Journey, *, requester: str = "marketer", approver: str = "approver") -> Journey:
    """Activate a demo journey as its marketer would: asking the approver first when it needs approval."""
    User = get_user_model()
    marketer = User.objects.get(username=requester)
    if journey_needs_approval(draft_snapshot(journey)):
        request_journey_approval(journey, actor=marketer)
        approve_journey(journey, actor=User.objects.get(username=approver))
    return activate_journey(journey, actor=marketer)


class Command(BaseCommand):
    help = "Load the demo data (users, contacts, consents, templates, the Welcome journey). Idempotent."

    def handle(self, *args, **options):
        logins_path = Path(settings.VAR_DIR) / "demo-logins.json"
        with transaction.atomic():
            logins = self.ensure_users(logins_path)
            contacts = [self.ensure_contact(data) for data in DEMO_CONTACTS]
            for contact in contacts:
                self.ensure_consents(contact)
            templates = {data["key"]: self.ensure_template(data) for data in DEMO_TEMPLATES}
            self.ensure_journey(templates)
            signups = sum(self.ensure_signup(contact) for contact in contacts)
            self.ensure_customer_question()
        self.report(logins, logins_path, signups)

    # --- users --------------------------------------------------------------------------------

    def ensure_users(self, logins_path: Path) -> dict:
        stored = json.loads(logins_path.read_text()) if logins_path.exists() else {}
        User = get_user_model()
        logins = {}
        for username, (group_name, superuser) in DEMO_USERS.items():
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"email": f"{username}@example.com", "is_staff": True, "is_superuser": superuser},
            )
            password = stored.get(username)
            # A known password is never set again on an existing user (that would rewrite its
            # hash on every run); a new user, or one whose password was lost with the logins
            # file, gets the stored one or a fresh one.
            if created or not password:
                password = password or secrets.token_urlsafe(12)
                user.set_password(password)
                user.save(update_fields=["password"])
            if group_name:
                try:
                    user.groups.add(Group.objects.get(name=group_name))
                except Group.DoesNotExist:
                    raise CommandError(f"Group {group_name!r} is missing: run `manage.py migrate` first.")
            logins[username] = password
        if logins != stored:
            self.write_logins(logins_path, logins)
        return logins

    @staticmethod
    def write_logins(path: Path, logins: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Readable by its owner only: these are real passwords for this instance's admin.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(logins, handle, indent=2)
            handle.write("\n")

    # --- contacts and consent -----------------------------------------------------------------

    def ensure_contact(self, data: dict) -> Contact:
        contact = Contact.objects.filter(external_id=data["external_id"]).first()
        if contact is None:
            contact = Contact(**data, locale="en", lifecycle_stage="trial")
            contact.full_clean()
            contact.save()
        return contact

    def ensure_consents(self, contact: Contact) -> None:
        for channel in (Channel.EMAIL, Channel.SMS):
            for purpose in (Purpose.MARKETING, Purpose.INFORMATIONAL):
                if Consent.objects.filter(contact=contact, channel=channel, purpose=purpose).exists():
                    continue
                opted_out = (
                    contact.external_id in SMS_MARKETING_OPT_OUTS
                    and (channel, purpose) == (Channel.SMS, Purpose.MARKETING)
                )
                # Recorded as an import: imported opt-ins get no SMS opt-in confirmation (unless
                # OMNI_CONFIRM_IMPORTED_OPT_INS), so the outbox holds only the journey's messages.
                record_consent_change(
                    contact, channel, purpose,
                    ConsentStatus.REVOKED if opted_out else ConsentStatus.GRANTED,
                    ConsentSource.IMPORT, evidence=CONSENT_EVIDENCE, lawful_basis=LawfulBasis.CONSENT,
                    actor_label="seed_demo",
                )

    # --- templates and the journey ------------------------------------------------------------

    def ensure_template(self, data: dict) -> Template:
        template, created = Template.objects.get_or_create(
            key=data["key"], defaults={"name": data["name"], "purpose": Purpose.MARKETING}
        )
        if created:
            TemplateVariant.objects.create(template=template, locale="en", **data["variant"])
        if not template.versions.exists():
            publish_template(template, actor_label="seed_demo")
        return template

    def ensure_journey(self, templates: dict) -> Journey:
        journey, created = Journey.objects.get_or_create(
            slug="welcome",
            defaults={
                "name": "Welcome",
                "description": "Email on sign-up; if it is not opened or clicked soon, an SMS.",
                "trigger_type": TriggerType.EVENT,
                "trigger_event": SIGNUP_EVENT,
                # Bob's question holds his welcome messages until support closes it.
                "on_reply": OnReply.PAUSE_RESUME,
                "goal_event": "activated",
                **ownership(objective="Turn new sign-ups into active trial users.", stage="trial"),
            },
        )
        if not created:
            return journey  # left as it is: someone may have edited or paused it on purpose

        def step(position, key, kind, **fields):
            return JourneyStep.objects.create(journey=journey, position=position, key=key, kind=kind, **fields)

        email = step(1, "welcome-email", StepKind.SEND, template=templates["welcome-email"],
                     channel_plan=[{"channel": Channel.EMAIL}], purpose=Purpose.MARKETING)
        wait = step(2, "short-wait", StepKind.WAIT, config={"seconds": WAIT_SECONDS})
        opened = step(3, "opened-email", StepKind.CONDITION, config={"check": "engaged", "step": "welcome-email"})
        sms = step(4, "welcome-sms", StepKind.SEND, template=templates["welcome-sms"],
                   channel_plan=[{"channel": Channel.SMS}], purpose=Purpose.MARKETING)
        done = step(5, "done", StepKind.EXIT)
        # Every edge spelled out, so the journey reads the same in the admin as it runs.
        for source, next_step, else_step in (
            (email, wait, None), (wait, opened, None), (opened, done, sms), (sms, done, None),
        ):
            source.next_step = next_step
            source.else_step = else_step
            source.save(update_fields=["next_step", "else_step"])
        if journey.status != JourneyStatus.ACTIVE:
            approve_and_activate(journey)
        return journey

    def ensure_signup(self, contact: Contact) -> bool:
        _, created = ingest_event(
            contact=contact, name=SIGNUP_EVENT, properties={"plan": "trial"}, occurred_at=timezone.now(),
            idempotency_key=f"demo-signup-{contact.external_id}", source="demo",
        )
        return created

    def ensure_customer_question(self) -> bool:
        bob = Contact.objects.get(external_id=CUSTOMER_QUESTION["external_id"])
        _, created = record_inbound_message(
            "sandbox", CUSTOMER_QUESTION["provider_message_id"], Channel.SMS, bob.phone,
            to_address=settings.TWILIO_FROM_NUMBER, body=CUSTOMER_QUESTION["body"], raw={"demo": True},
        )
        return created

    # --- output -------------------------------------------------------------------------------

    def report(self, logins: dict, logins_path: Path, signups: int) -> None:
        out = self.stdout
        out.write("")
        out.write(self.style.SUCCESS("Omni demo data is ready."))
        out.write(f"  Admin:          {ADMIN_URL}")
        out.write(f"  Sandbox outbox: {OUTBOX_URL}")
        out.write(f"  Logins (kept in {logins_path}):")
        for username, (group_name, superuser) in DEMO_USERS.items():
            role = "superuser" if superuser else group_name
            out.write(f"    {username:<11} {logins[username]:<20} ({role})")
        out.write(f"  Support inbox:  {INBOX_URL} (Bob asked a question by SMS)")
        if signups:
            out.write(f"  {signups} demo contact(s) just signed up: the Welcome journey emails them now and, "
                      f"unless they open it, texts them {WAIT_SECONDS}s later.")
        else:
            out.write("  The demo sign-ups were recorded on an earlier run; nothing new will be sent.")
        out.write("")
