"""Edges of the exports and the home's figures: cells a spreadsheet would run or refuse, and
figures that must count what their link lists."""
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from campaigns import step_counts
from campaigns.diagram_admin import enrollments_at_step_url
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStatus, JourneyVersion
from channels.models import Delivery
from contacts.models import Contact
from omni.lib.spreadsheet import read_xlsx
from omni.web import home
from omni.tests.test_exports import EXPORT_URL, send, xlsx_rows

pytestmark = pytest.mark.django_db

# Excel's limit on the characters of one cell.
XLSX_CELL_MAX = 32_767


@pytest.fixture
def compliance_client(client, django_user_model, role_groups):
    user = django_user_model.objects.create_user(username="edges-compliance", password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name="Compliance"))
    client.force_login(user)
    return client


def test_a_formula_behind_a_control_character_is_neutralized_in_xlsx(compliance_client):
    # given a contact whose external id hides a formula behind a character XML does not allow
    mallory = Contact.objects.create(external_id='\x01=HYPERLINK("http://evil.example","x")', email="m@example.com")
    send(mallory, purpose="transactional")

    # when
    rows = xlsx_rows(compliance_client.get(reverse(EXPORT_URL), {"format": "xlsx"}))

    # then the control character is gone and what it hid is text, not a formula
    assert [r["contact_external_id"] for r in rows] == ['\'=HYPERLINK("http://evil.example","x")']


def test_the_contact_report_keeps_text_a_spreadsheet_cannot_hold_readable(compliance_client):
    # given a message whose body is longer than a cell and holds a control character
    alice = Contact.objects.create(external_id="alice", email="alice@example.com")
    send(alice, purpose="transactional")
    Delivery.objects.filter(contact=alice).update(text_body="\x0b-cmd|' /C calc'!A0" + "z" * 40_000)

    # when
    response = compliance_client.get(reverse("omni-web:contact-report", args=[alice.pk]))

    # then the report opens, the body cut to a cell and neutralized
    assert response.status_code == 200
    sent = read_xlsx(io.BytesIO(b"".join(response.streaming_content)))["Messages as sent"]
    body = dict(zip(sent[0], sent[1]))["text_body"]
    assert body.startswith("'-cmd|") and len(body) == XLSX_CELL_MAX


def test_contacts_in_a_journey_on_the_home_match_the_list_it_links_to(client, django_user_model):
    # given an active journey with one active and one paused enrollment (both in the journey)
    user = django_user_model.objects.create_user(username="root", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    journey = Journey.objects.create(name="Onboarding", slug="onboarding", status=JourneyStatus.ACTIVE)
    version = JourneyVersion.objects.create(journey=journey, number=1, trigger_type="event")
    for n, state in enumerate([EnrollmentState.ACTIVE, EnrollmentState.PAUSED, EnrollmentState.COMPLETED]):
        contact = Contact.objects.create(external_id=f"c{n}", email=f"c{n}@example.com")
        Enrollment.objects.create(journey=journey, journey_version=version, contact=contact, state=state,
                                  next_run_at=timezone.now())

    # when
    response = client.get("/admin/")
    panel = next(p for p in response.context["panels"] if p.role == "marketing")
    figure = next(f for f in panel.figures if f.label == "Onboarding: contacts in the journey")

    # then the figure counts the live ones, and its link lists the same
    assert figure.value == 2
    listed = client.get(figure.url)
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == figure.value


def test_enrollments_due_on_the_home_match_the_list_it_links_to(client, django_user_model):
    # given, at a moment part-way through a second: an enrollment due earlier in that second, one
    # a worker has claimed, one quarantined (counted apart), and one due later
    user = django_user_model.objects.create_user(username="root", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    now = timezone.now().replace(microsecond=900_000)
    journey = Journey.objects.create(name="Onboarding", slug="onboarding", status=JourneyStatus.ACTIVE)
    version = JourneyVersion.objects.create(journey=journey, number=1, trigger_type="event")
    for n, extra in enumerate([{"next_run_at": now.replace(microsecond=400_000)},
                               {"next_run_at": now - timedelta(minutes=1)},
                               {"next_run_at": now - timedelta(minutes=1), "claimed_at": now - timedelta(seconds=5)},
                               {"next_run_at": now - timedelta(minutes=1), "quarantined_at": now},
                               {"next_run_at": now + timedelta(minutes=1)}]):
        contact = Contact.objects.create(external_id=f"c{n}", email=f"c{n}@example.com")
        Enrollment.objects.create(journey=journey, journey_version=version, contact=contact,
                                  state=EnrollmentState.ACTIVE, **extra)

    # when
    panel = next(p for p in home.panels_for(user, now=now) if p.role == "administrators")
    figure = next(f for f in panel.figures if f.label == "Enrollments due")

    # then the due ones the tick would run are counted, and the link lists just those
    assert figure.value == 2
    assert client.get(figure.url).context["cl"].result_count == figure.value


def test_a_diagram_nodes_link_lists_the_contacts_its_count_counts(client, django_user_model):
    # given one contact waiting at a step and one who finished the journey there (its step kept)
    user = django_user_model.objects.create_user(username="root", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    journey = Journey.objects.create(name="Onboarding", slug="onboarding", status=JourneyStatus.ACTIVE)
    version = JourneyVersion.objects.create(journey=journey, number=1, trigger_type="event")
    for n, state in enumerate([EnrollmentState.ACTIVE, EnrollmentState.COMPLETED]):
        contact = Contact.objects.create(external_id=f"c{n}", email=f"c{n}@example.com")
        Enrollment.objects.create(journey=journey, journey_version=version, contact=contact, state=state,
                                  current_step_key="wait")

    # when
    count = step_counts.contacts_at_steps([version.pk])[version.pk]["wait"]
    listed = client.get(enrollments_at_step_url(journey, version, "wait"))

    # then the node's link lists the one its count says is there
    assert count == 1
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == count
