"""Moving contacts to the latest version while a tick runs them (PostgreSQL: row locks)."""
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone

from campaigns import advancing, tick_report
from campaigns.actions import activate_journey, enroll_contact, move_to_latest_version, publish_journey
from campaigns.models import Enrollment, Journey, JourneyStep, StepKind
from contacts.models import Contact

from .conftest import make_journey

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="row locks between two connections need PostgreSQL; set DATABASE_URL to run it (SQLite serializes writers)",
)


@pytest.mark.postgres
@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_a_move_waits_for_the_tick_running_a_contact_and_judges_the_step_it_left_her_at():
    # given Ann due at "first" on version 1, and version 2 without the step "first" leads to
    journey = make_journey(name="Drip", slug="drip", trigger_event="x")
    for position, key, kind, config in ((1, "first", StepKind.WAIT, {"seconds": 60}),
                                        (2, "second", StepKind.WAIT, {"seconds": 60}),
                                        (3, "third", StepKind.EXIT, {})):
        JourneyStep.objects.create(journey=journey, position=position, key=key, kind=kind, config=config)
    activate_journey(journey)
    ann = enroll_contact(journey, Contact.objects.create(external_id="ann"))
    JourneyStep.objects.filter(journey=journey, key="second").delete()
    publish_journey(journey)

    # when a tick has claimed Ann and moved her to "second" but not committed yet, and a move starts
    claimed, refusals, errors = threading.Event(), [], []

    def tick():
        try:
            with transaction.atomic():
                advancing.advance_enrollments_batch(timezone.now(), tick_report.TickReport())
                claimed.set()
                time.sleep(1)  # the move runs meanwhile, and has to wait for this commit
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            claimed.set()
            connections.close_all()

    def move():
        try:
            claimed.wait(10)
            move_to_latest_version(Journey.objects.get(pk=journey.pk))
        except ValidationError as exc:
            refusals.extend(exc.messages)
        except Exception as exc:  # surfaced through `errors`
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tick), threading.Thread(target=move)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # then the move saw where the tick left her, a step version 2 lacks, and left her on version 1
    assert not errors
    assert refusals and "version 2 has no step 'second' (1 contact on version 1)" in refusals[0]
    ann = Enrollment.objects.get(pk=ann.pk)
    assert (ann.journey_version.number, ann.current_step_key) == (1, "second")
