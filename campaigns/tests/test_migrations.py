"""Upgrading a database built before journey versions: running journeys get version 1 from their
steps, and the contacts in them carry on from where they were."""
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from campaigns.tick import tick
from campaigns.models import Enrollment, EnrollmentState, Journey, JourneyStepVisit
from omni.models import AuditEntry
from templates.models import TemplateVersion

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_VERSIONS = [("campaigns", "0002_visits_and_recipients")]


def migrate(targets):
    """Migrate the test database to `targets`; returns the app registry as of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.fixture
def database_before_versions():
    """The database as 0002 left it, with a running journey and a contact in it; migrated to the
    latest state again afterwards."""
    old = migrate(BEFORE_VERSIONS)
    try:
        yield build_old_rows(old)
    finally:
        migrate(latest())


def build_old_rows(old) -> dict:
    Template = old.get_model("message_templates", "Template")
    TemplateVariant = old.get_model("message_templates", "TemplateVariant")
    TemplateVersion = old.get_model("message_templates", "TemplateVersion")
    Contact = old.get_model("contacts", "Contact")
    Journey = old.get_model("campaigns", "Journey")
    JourneyStep = old.get_model("campaigns", "JourneyStep")
    Enrollment = old.get_model("campaigns", "Enrollment")
    Visit = old.get_model("campaigns", "JourneyStepVisit")

    email = Template.objects.create(key="welcome-email", name="Welcome email", purpose="marketing")
    TemplateVariant.objects.create(template=email, channel="email", subject="Hi", text_body="Hi")
    email_v1 = TemplateVersion.objects.create(template=email, number=1, purpose="marketing",
                                              variants=[{"channel": "email", "locale": "en", "subject": "Hi",
                                                         "text_body": "Hi"}])
    # Never published: the old tick would have published it when the first contact reached it.
    sms = Template.objects.create(key="welcome-sms", name="Welcome SMS", purpose="marketing")
    TemplateVariant.objects.create(template=sms, channel="sms", text_body="Hi {{ first_name }}, by SMS")

    journey = Journey.objects.create(name="Welcome", slug="welcome", status="active", trigger_event="signed_up",
                                     goal_event="purchased")
    step = {}
    for position, key, kind, fields in (
        (1, "welcome-email", "send", {"template": email, "channel_plan": [{"channel": "email"}]}),
        (2, "wait", "wait", {"config": {"seconds": 60}}),
        (3, "opened", "condition", {"config": {"check": "engaged", "step": "welcome-email"}}),
        (4, "welcome-sms", "send", {"template": sms, "channel_plan": [{"channel": "sms"}]}),
        (5, "done", "exit", {}),
    ):
        step[key] = JourneyStep.objects.create(journey=journey, position=position, key=key, kind=kind, **fields)
    JourneyStep.objects.filter(pk=step["opened"].pk).update(next_step=step["done"], else_step=step["welcome-sms"])
    JourneyStep.objects.filter(pk=step["welcome-sms"].pk).update(next_step=step["done"])
    draft = Journey.objects.create(name="Idea", slug="idea", trigger_event="x")
    JourneyStep.objects.create(journey=draft, position=1, key="think", kind="wait", config={"seconds": 5})

    ann = Contact.objects.create(external_id="ann", email="ann@example.com", phone="+14155550101", first_name="Ann")
    enrollment = Enrollment.objects.create(journey=journey, contact=ann, journey_version=1, current_step=step["opened"],
                                           state="active", next_run_at=timezone.now(), steps_taken=2)
    Visit.objects.create(enrollment=enrollment, journey=journey, journey_version=1, step=step["welcome-email"],
                         step_key="welcome-email", step_kind="send", visit_number=1, outcome="queued")
    return {"journey": journey.pk, "draft": draft.pk, "enrollment": enrollment.pk, "email_v1": email_v1.pk}


def test_upgrading_gives_running_journeys_version_1_and_their_contacts_carry_on(database_before_versions):
    # when the database is upgraded
    migrate(latest())

    # then the running journey has version 1, snapshotted from its steps, and the draft journey none
    journey = Journey.objects.get(pk=database_before_versions["journey"])
    version = journey.live_version
    assert version.number == 1 and version.goal_event == "purchased"
    assert [(s["key"], s["next"], s["else"]) for s in version.steps] == [
        ("welcome-email", None, None), ("wait", None, None), ("opened", "done", "welcome-sms"),
        ("welcome-sms", "done", None), ("done", None, None),
    ]
    assert version.steps[0]["template_version"] == database_before_versions["email_v1"]
    sms_version = TemplateVersion.objects.get(template__key="welcome-sms")
    assert version.steps[3]["template_version"] == sms_version.pk
    assert Journey.objects.get(pk=database_before_versions["draft"]).live_version is None
    published = set(AuditEntry.objects.filter(actor_label="system:migration").values_list("action", flat=True))
    assert published == {"journey.published", "template.published"}

    # and the contact in it is pinned to version 1 at the step she had reached
    enrollment = Enrollment.objects.get(pk=database_before_versions["enrollment"])
    assert (enrollment.journey_version, enrollment.current_step_key) == (version, "opened")
    assert JourneyStepVisit.objects.get(enrollment=enrollment).journey_version == version

    # and the tick carries her on through version 1
    tick(timezone.now() + timedelta(seconds=1))
    enrollment.refresh_from_db()
    assert (enrollment.state, enrollment.end_reason) == (EnrollmentState.EXITED, "exit:done")
    assert list(enrollment.visits.order_by("visit_number").values_list("step_key", "journey_version__number")) == [
        ("welcome-email", 1), ("opened", 1), ("welcome-sms", 1), ("done", 1),
    ]


def test_downgrading_puts_the_version_numbers_and_step_pointers_back(database_before_versions):
    # given the upgraded database
    migrate(latest())

    # when it is migrated back
    old = migrate(BEFORE_VERSIONS)

    # then the enrollment has its number and its step row again
    enrollment = old.get_model("campaigns", "Enrollment").objects.select_related("current_step").get(
        pk=database_before_versions["enrollment"]
    )
    assert (enrollment.journey_version, enrollment.current_step.key) == (1, "opened")
