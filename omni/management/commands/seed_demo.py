"""Demo data for `make run`: staff users for each role, contacts with consent, templates, three
active journeys (Welcome, Payment failed, Appointment reminder) and the events that put the demo
contacts into them, and an SMS question from Bob, so the support inbox has a conversation
whatever the journeys send.

Safe to run any number of times: it creates what is missing and changes nothing that exists
(an edited contact, template or journey is left as the user made it: a database seeded before
these journeys keeps its old Welcome journey). Passwords are generated once and kept in
VAR_DIR/demo-logins.json (never committed), so later runs print the same ones.

The journeys wait for days; OMNI_DEMO_TIME_SCALE=1440 (omni/lib/demo_time.py) makes each day a
minute, and the demo appointment is booked that many scaled days ahead, so all three run in minutes.
"""
import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from campaigns.actions import activate_journey, draft_snapshot, journey_needs_approval
from campaigns.enrolling import process_events_batch
from campaigns.journey_approval import approve_journey, request_journey_approval
from campaigns.models import (Campaign, CampaignVariant, Journey, JourneyStatus, JourneyStep, OnReply, StepKind,
                              TriggerType)
from campaigns.tick_report import TickReport
from campaigns.timing import contact_zone
from channels.provider_reports import record_inbound_message
from compliance.actions import record_consent_change
from compliance.models import Consent, ConsentSource, ConsentStatus
from contacts.ingest import ingest_event
from contacts.models import Contact, ContactEvent, LifecycleStage, Segment
from omni.choices import Channel, LawfulBasis, Purpose
from omni.lib.demo_time import scaled
from templates.actions import publish_template
from templates.models import Template, TemplateVariant

ADMIN_URL = "http://127.0.0.1:8000/admin/"
OUTBOX_URL = "http://127.0.0.1:8000/admin/channels/outboxmessage/"
INBOX_URL = "http://127.0.0.1:8000/admin/inbox/"
JOURNEYS_URL = "http://127.0.0.1:8000/admin/campaigns/journey/"
CAMPAIGNS_URL = "http://127.0.0.1:8000/admin/campaigns/campaign/"

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
# A test contact (a member of staff's own address): the one a journey being tested enrols, and
# whose messages are marked as tests. She does not sign up, so the Welcome journey leaves her be.
DEMO_TEST_CONTACT = {"external_id": "demo-tess", "first_name": "Tess", "last_name": "Test",
                     "email": "tess@example.com", "phone": "+14155550106", "timezone": "America/Los_Angeles",
                     "country": "US", "is_test": True}
SMS_MARKETING_OPT_OUTS = {"demo-erin"}
CONSENT_EVIDENCE = {"note": "demo data"}

DAY = 24 * 3600
HOUR = 3600

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
                "The Omni demo team\n\n"
                "Unsubscribe: {{ unsubscribe_url }}"
            ),
            "html_body": (
                "<p>Hi {{ first_name }},</p>\n"
                "<p>Thanks for signing up. Your trial is ready: have a look around.</p>\n"
                "<p>The Omni demo team</p>\n"
                '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>'
            ),
        },
    },
    {
        "key": "welcome-whatsapp",
        "name": "Welcome WhatsApp nudge (day 3)",
        # On Twilio, WhatsApp outside the 24-hour window needs an approved content template: its
        # SID goes in the variant's provider template id. The sandbox sends the text as it is.
        "variant": {
            "channel": Channel.WHATSAPP,
            "text_body": ("Hi {{ first_name }}, it's the Omni team. You signed up three days ago: want a "
                          "15-minute tour of your first journey? Just answer here. Reply STOP to opt out."),
        },
    },
    {
        "key": "welcome-sms",
        "name": "Welcome SMS (day 7)",
        "variant": {
            "channel": Channel.SMS,
            # Plain GSM-7 text under 160 characters: one SMS segment.
            "text_body": ("Hi {{ first_name }}, welcome to Omni! A week into your trial, your quick-start "
                          "guide is in your inbox. Reply STOP to opt out."),
        },
    },
    {
        "key": "payment-failed-email",
        "name": "Payment failed email",
        "purpose": Purpose.TRANSACTIONAL,
        "variant": {
            "channel": Channel.EMAIL,
            "subject": "Your payment of {{ trigger.amount }} did not go through",
            "preheader": "Update your card to keep your account running.",
            "text_body": (
                "Hi {{ first_name }},\n\n"
                "We could not take {{ trigger.amount }} for invoice {{ trigger.invoice }}: your bank declined "
                "the card ending in {{ trigger.card_last4 }}.\n\n"
                "Update your card under Settings > Billing and we will try again. Nothing else changes "
                "in the meantime.\n\n"
                "The Omni billing team"
            ),
            "html_body": (
                "<p>Hi {{ first_name }},</p>\n"
                "<p>We could not take {{ trigger.amount }} for invoice {{ trigger.invoice }}: your bank "
                "declined the card ending in {{ trigger.card_last4 }}.</p>\n"
                "<p>Update your card under <strong>Settings &gt; Billing</strong> and we will try again. "
                "Nothing else changes in the meantime.</p>\n"
                "<p>The Omni billing team</p>"
            ),
        },
    },
    {
        "key": "payment-failed-sms",
        "name": "Payment still failed SMS",
        "purpose": Purpose.TRANSACTIONAL,
        "variant": {
            "channel": Channel.SMS,
            "text_body": ("Omni: {{ first_name }}, invoice {{ trigger.invoice }} ({{ trigger.amount }}) is still "
                          "unpaid. Please update your card under Settings > Billing."),
        },
    },
    {
        "key": "appointment-reminder-sms",
        "name": "Appointment reminder SMS (the day before)",
        "purpose": Purpose.INFORMATIONAL,
        "variant": {
            "channel": Channel.SMS,
            "text_body": ("Hi {{ first_name }}, a reminder: your appointment with {{ trigger.practitioner }} "
                          "is {{ trigger.starts }}. See you then!"),
        },
    },
    {
        "key": "appointment-missed-sms",
        "name": "Missed appointment SMS",
        "purpose": Purpose.INFORMATIONAL,
        "variant": {
            "channel": Channel.SMS,
            "text_body": ("Hi {{ first_name }}, we missed you at your appointment with {{ trigger.practitioner }} "
                          "({{ trigger.starts }}). Answer this text and we will find you a new time."),
        },
    },
]


# --- the journeys, each from a small description (build_journey makes the rows) -------------------
# A step: its key and kind, its config, for a send its template and channel, and where it goes
# next (default: the step after it) and else (a wait's timeout branch, a date missing).

def send(key: str, template: str, channel: str, **links) -> dict:
    return {"key": key, "kind": StepKind.SEND, "template": template, "channel": channel, **links}


def wait(key: str, seconds: int, **links) -> dict:
    return {"key": key, "kind": StepKind.WAIT, "config": {"seconds": seconds}, **links}


def wait_for_event(key: str, event: str, timeout_seconds: int, *, timed_out: str, **links) -> dict:
    return {"key": key, "kind": StepKind.WAIT_EVENT, "config": {"event": event, "timeout_seconds": timeout_seconds},
            "else": timed_out, **links}


def wait_for_date(key: str, trigger_property: str, offset_seconds: int, *, no_date: str, **links) -> dict:
    return {"key": key, "kind": StepKind.WAIT_DATE,
            "config": {"property": trigger_property, "offset_seconds": offset_seconds}, "else": no_date, **links}


def exit_step(key: str) -> dict:
    return {"key": key, "kind": StepKind.EXIT}


SIGNUP_EVENT = "signed_up"
ACTIVATED_EVENT = "activated"
PAYMENT_FAILED_EVENT = "payment_failed"
INVOICE_PAID_EVENT = "invoice_paid"
APPOINTMENT_BOOKED_EVENT = "appointment_booked"
APPOINTMENT_ATTENDED_EVENT = "appointment_attended"

# Each journey: its fields (any of Journey's, passed as they are) and its steps, in order.
# ensure_journey creates each once, by its slug, and activates it.
DEMO_JOURNEYS = [
    {
        "slug": "welcome",
        "name": "Welcome",
        "objective": "Turn new sign-ups into active trial users.",
        "stage": "trial",
        "description": "Email on sign-up; WhatsApp on day 3 unless they activated; SMS on day 7. Activating ends it.",
        "trigger_event": SIGNUP_EVENT,
        "goal_event": ACTIVATED_EVENT,
        # Bob's question holds his welcome messages until support closes it.
        "on_reply": OnReply.PAUSE_RESUME,
        "steps": [
            send("welcome-email", "welcome-email", Channel.EMAIL),
            wait_for_event("await-activation", ACTIVATED_EVENT, 3 * DAY, timed_out="welcome-whatsapp", next="done"),
            send("welcome-whatsapp", "welcome-whatsapp", Channel.WHATSAPP),
            wait("until-day-7", 4 * DAY),
            send("welcome-sms", "welcome-sms", Channel.SMS),
            exit_step("done"),
        ],
    },
    {
        "slug": "payment-failed",
        "name": "Payment failed",
        "objective": "Recover failed payments before the subscription lapses.",
        "stage": "customer",
        "description": "Email when a payment fails; an SMS three days later only if the invoice is still unpaid.",
        "trigger_event": PAYMENT_FAILED_EVENT,
        "goal_event": INVOICE_PAID_EVENT,
        "steps": [
            send("payment-failed-email", "payment-failed-email", Channel.EMAIL),
            wait_for_event("await-payment", INVOICE_PAID_EVENT, 3 * DAY, timed_out="still-unpaid-sms", next="done"),
            send("still-unpaid-sms", "payment-failed-sms", Channel.SMS),
            exit_step("done"),
        ],
    },
    {
        "slug": "appointment-reminder",
        "name": "Appointment reminder",
        "objective": "Fewer missed appointments, and a quick rebooking when one is missed.",
        "stage": "customer",
        "description": ("On booking: an SMS 24 hours before the appointment; if they have not attended 2 hours "
                        "after it starts, a follow-up SMS to book again."),
        "trigger_event": APPOINTMENT_BOOKED_EVENT,
        "goal_event": APPOINTMENT_ATTENDED_EVENT,
        "steps": [
            wait_for_date("day-before", "appointment_at", -DAY, no_date="done"),
            send("reminder-sms", "appointment-reminder-sms", Channel.SMS),
            wait_for_date("appointment-time", "appointment_at", 0, no_date="done"),
            # Waits from the appointment's start, so the window ends 2 hours after it however
            # late the booking came; checking in early ends the journey through its goal.
            wait_for_event("await-attendance", APPOINTMENT_ATTENDED_EVENT, 2 * HOUR, timed_out="missed-sms",
                           next="done"),
            send("missed-sms", "appointment-missed-sms", Channel.SMS),
            exit_step("done"),
        ],
    },
]

# The events that put demo contacts into the journeys: a sign-up each (Welcome), Alice's failed
# payment, and Erin's appointment, booked two days ahead on the demo's clock (two minutes at
# OMNI_DEMO_TIME_SCALE=1440). Erin opted out of SMS marketing: her reminders are informational.
PAYMENT_FAILED = {"external_id": "demo-alice",
                  "properties": {"invoice": "INV-1042", "amount": "$49.00", "card_last4": "4242"}}
APPOINTMENT = {"external_id": "demo-erin", "ahead_seconds": 2 * DAY, "practitioner": "Dr. Rivera"}
# Carol activates her trial at once: her Welcome ends at its goal.
ACTIVATION = {"external_id": "demo-carol"}

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


def ensure_journey(description: dict, templates: dict[str, Template]) -> Journey:
    """The journey `description` (a DEMO_JOURNEYS entry) describes, created with its steps and
    activated when its slug is new; an existing journey is left as it is (someone may have
    edited or paused it on purpose)."""
    fields = {name: value for name, value in description.items()
              if name not in ("slug", "steps", "objective", "stage")}
    fields.update(ownership(objective=description["objective"], stage=description["stage"]))
    journey, created = Journey.objects.get_or_create(
        slug=description["slug"], defaults={"trigger_type": TriggerType.EVENT, **fields})
    if not created:
        return journey
    specs = description["steps"]
    steps = {}
    for position, spec in enumerate(specs, start=1):
        steps[spec["key"]] = JourneyStep.objects.create(
            journey=journey, position=position, key=spec["key"], kind=spec["kind"], config=spec.get("config", {}),
            template=templates[spec["template"]] if "template" in spec else None,
            channel_plan=[{"channel": spec["channel"]}] if "channel" in spec else [],
        )
    # Every edge spelled out, so the journey reads the same in the admin as it runs.
    for index, spec in enumerate(specs):
        if spec["kind"] == StepKind.EXIT:
            continue
        following = spec.get("next") or (specs[index + 1]["key"] if index + 1 < len(specs) else None)
        step = steps[spec["key"]]
        step.next_step = steps.get(following)
        step.else_step = steps.get(spec.get("else"))
        step.save(update_fields=["next_step", "else_step"])
    if journey.status != JourneyStatus.ACTIVE:
        approve_and_activate(journey)
    return journey


# The demo contacts are all on a trial, so the campaign has an audience to send to.
DEMO_SEGMENT = {"name": "Demo trial contacts", "description": "Contacts whose lifecycle stage is trial.",
                "definition": {"match": "all", "filters": [{"kind": "lifecycle_stage", "stages": ["trial"]}]}}
# A draft campaign to that segment with an A/B test of two templates and a holdout: open it, ask for
# approval as the marketer, approve it as the approver, then start it (the campaign page).
DEMO_CAMPAIGN = {"name": "Spring offer (demo)", "template": "welcome-email", "purpose": Purpose.MARKETING,
                 "holdout_percent": 10, "test_percent": 50, "test_period": timedelta(days=1),
                 "objective": "Bring customers back for the spring range.", "goal_event": "purchased",
                 "goal_window": timedelta(days=7), "stage": "customer",
                 "channel_plan": [{"channel": "email"}, {"channel": "sms"}],
                 "variants": [("Email", "welcome-email", 50), ("SMS", "welcome-sms", 50)]}


def ensure_campaign(templates: dict[str, Template]) -> Campaign:
    """The demo segment and the draft demo campaign, made once (a later run leaves them as they are)."""
    segment, _ = Segment.objects.get_or_create(name=DEMO_SEGMENT["name"], defaults={
        "description": DEMO_SEGMENT["description"], "definition": DEMO_SEGMENT["definition"]})
    campaign = Campaign.objects.filter(name=DEMO_CAMPAIGN["name"]).first()
    if campaign is not None:
        return campaign
    marketer = get_user_model().objects.get(username="marketer")
    data = DEMO_CAMPAIGN
    campaign = Campaign.objects.create(
        name=data["name"], template=templates[data["template"]], segment=segment, purpose=data["purpose"],
        channel_plan=data["channel_plan"],
        holdout_percent=data["holdout_percent"], test_percent=data["test_percent"], test_period=data["test_period"],
        owner=marketer, objective=data["objective"], goal_event=data["goal_event"], goal_window=data["goal_window"],
        lifecycle_stage=ownership(objective=data["objective"], stage=data["stage"])["lifecycle_stage"],
        created_by=marketer)
    CampaignVariant.objects.bulk_create([
        CampaignVariant(campaign=campaign, name=name, template=templates[key], weight=weight, position=position)
        for position, (name, key, weight) in enumerate(data["variants"])])
    return campaign


class Command(BaseCommand):
    help = ("Load the demo data (users, contacts, consents, templates, the Welcome, Payment failed and Appointment "
            "reminder journeys, the events that start them). Idempotent.")

    def handle(self, *args, **options):
        logins_path = Path(settings.VAR_DIR) / "demo-logins.json"
        with transaction.atomic():
            logins = self.ensure_users(logins_path)
            contacts = {data["external_id"]: self.ensure_contact(data) for data in DEMO_CONTACTS}
            for contact in [*contacts.values(), self.ensure_contact(DEMO_TEST_CONTACT)]:
                self.ensure_consents(contact)
            templates = {data["key"]: self.ensure_template(data) for data in DEMO_TEMPLATES}
            for description in DEMO_JOURNEYS:
                ensure_journey(description, templates)
            ensure_campaign(templates)
            signups = sum(self.ensure_signup(contact) for contact in contacts.values())
            self.ensure_payment_failed(contacts[PAYMENT_FAILED["external_id"]])
            appointment = self.ensure_appointment(contacts[APPOINTMENT["external_id"]])
            self.ensure_customer_question()
            self.ensure_activation(contacts[ACTIVATION["external_id"]])
        self.report(logins, logins_path, signups, appointment)

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
        for channel in (Channel.EMAIL, Channel.SMS, Channel.WHATSAPP):
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
            key=data["key"], defaults={"name": data["name"], "purpose": data.get("purpose", Purpose.MARKETING)}
        )
        if created:
            TemplateVariant.objects.create(template=template, locale="en", **data["variant"])
        if not template.versions.exists():
            publish_template(template, actor_label="seed_demo")
        return template

    def ensure_signup(self, contact: Contact) -> bool:
        _, created = ingest_event(
            contact=contact, name=SIGNUP_EVENT, properties={"plan": "trial"}, occurred_at=timezone.now(),
            idempotency_key=f"demo-signup-{contact.external_id}", source="demo",
        )
        return created

    def ensure_payment_failed(self, contact: Contact) -> bool:
        _, created = ingest_event(
            contact=contact, name=PAYMENT_FAILED_EVENT, properties=PAYMENT_FAILED["properties"],
            occurred_at=timezone.now(), idempotency_key=f"demo-payment-failed-{contact.external_id}", source="demo",
        )
        return created

    def ensure_appointment(self, contact: Contact) -> ContactEvent:
        """The booking, its time on the demo's clock; the one stored earlier when there is one."""
        now = timezone.now()
        starts_at = (now + scaled(APPOINTMENT["ahead_seconds"])).replace(microsecond=0)
        local = starts_at.astimezone(contact_zone(contact))
        event, _ = ingest_event(
            contact=contact, name=APPOINTMENT_BOOKED_EVENT, occurred_at=now, source="demo",
            idempotency_key=f"demo-appointment-{contact.external_id}",
            properties={"appointment_at": starts_at.isoformat(), "practitioner": APPOINTMENT["practitioner"],
                        "starts": f"{local:%A} {local.day} {local:%B at %H:%M}"},
        )
        return event

    def ensure_activation(self, contact: Contact) -> bool:
        """Carol activates her trial, which ends her Welcome at its goal. The events stored above
        are processed here first (contacts enrolled, Bob's question pausing his Welcome; nothing
        is sent: steps run in the tick), then her activation is stored: it comes after her
        sign-up, as a goal must to convert the enrollment the sign-up made."""
        key = f"demo-activated-{contact.external_id}"
        if ContactEvent.objects.filter(source="demo", idempotency_key=key).exists():
            return False
        now = timezone.now()
        while process_events_batch(now, TickReport()):
            pass
        _, created = ingest_event(contact=contact, name=ACTIVATED_EVENT, properties={"via": "first journey"},
                                  occurred_at=timezone.now(), idempotency_key=key, source="demo")
        return created

    def ensure_customer_question(self) -> bool:
        bob = Contact.objects.get(external_id=CUSTOMER_QUESTION["external_id"])
        _, created = record_inbound_message(
            "sandbox", CUSTOMER_QUESTION["provider_message_id"], Channel.SMS, bob.phone,
            to_address=settings.TWILIO_FROM_NUMBER, body=CUSTOMER_QUESTION["body"], raw={"demo": True},
        )
        return created

    # --- output -------------------------------------------------------------------------------

    def report(self, logins: dict, logins_path: Path, signups: int, appointment: ContactEvent) -> None:
        out = self.stdout
        out.write("")
        out.write(self.style.SUCCESS("Omni demo data is ready."))
        out.write(f"  Admin:          {ADMIN_URL}")
        out.write(f"  Sandbox outbox: {OUTBOX_URL}")
        out.write(f"  Journeys:       {JOURNEYS_URL} (open one for its enrollments and steps)")
        out.write(f"  Logins (kept in {logins_path}):")
        for username, (group_name, superuser) in DEMO_USERS.items():
            role = "superuser" if superuser else group_name
            out.write(f"    {username:<11} {logins[username]:<20} ({role})")
        out.write(f"  Support inbox:  {INBOX_URL} (Bob asked a question by SMS)")
        out.write(f"  Campaigns:      {CAMPAIGNS_URL} ({DEMO_CAMPAIGN['name']!r} is a draft with an A/B test and a "
                  f"holdout: request approval as marketer, approve as approver, then start it)")
        if signups:
            out.write(f"  {signups} demo contact(s) just signed up: the Welcome journey emails them now, sends "
                      f"WhatsApp on day 3 unless they activated (Carol did), and SMS on day 7.")
        else:
            out.write("  The demo sign-ups were recorded on an earlier run; nothing new will be sent.")
        out.write(f"  Alice's payment failed (Payment failed journey); Erin's appointment is at "
                  f"{appointment.properties['appointment_at']} (Appointment reminder journey).")
        scale = settings.OMNI_DEMO_TIME_SCALE
        if scale != 1:
            out.write(f"  OMNI_DEMO_TIME_SCALE={scale:g}: every journey wait is {scale:g} times shorter "
                      f"(a day lasts {scaled(24 * 3600).total_seconds():g} s).")
        else:
            out.write("  Journeys wait in real time (days); OMNI_DEMO_TIME_SCALE=1440 makes a day last a minute.")
        out.write("")
