"""Edges of the builder, its forms and approval: a duration typed too long is a form error, not a
500; two marketers saving one journey's form do not silently overwrite each other; an edit of an
older journey that changes nothing keeps its approval."""
import pytest
from django.urls import reverse

from campaigns import drafts
from campaigns.journey_approval import approve_journey, request_journey_approval
from campaigns.models import Journey
from omni.models import AuditEntry

from .test_admin_versions import change_form_data
from .test_campaign_page import form_data

pytestmark = pytest.mark.django_db


def test_a_campaign_duration_typed_too_long_is_refused_on_its_field_not_a_500(
    client, marketer, welcome_templates, segment,  # noqa: F811
):
    client.force_login(marketer)
    data = form_data(welcome_templates[0], segment, marketer, expires_after_0="9999999999", expires_after_1="days")

    response = client.post(reverse("admin:campaigns_campaign_add"), data)

    assert response.status_code == 200
    assert "expires_after" in response.context["adminform"].form.errors


def test_a_follow_up_delay_typed_too_long_is_refused_not_a_500(client, marketer, draft):  # noqa: F811
    client.force_login(marketer)

    response = client.post(reverse("admin:campaigns_campaign_follow_up", args=[draft.pk]),
                           {"when": "not_opened", "after_0": "9999999999", "after_1": "days", "name": ""})

    assert response.status_code == 200
    assert "after" in response.context["form"].errors


def test_a_journey_form_saved_from_a_page_older_than_another_marketers_save_is_refused(
    client, marketer, marketing_draft,  # noqa: F811
):
    # given two marketers who opened the journey's page at the same time
    url = reverse("admin:campaigns_journey_change", args=[marketing_draft.pk])
    client.force_login(marketer)
    first = change_form_data(client.get(url))
    second = change_form_data(client.get(url))

    # when the first renames it and sets its objective, then the second edits only the description
    first.update(name="Spring newsletter", objective="Bring trial users back")
    assert client.post(url, first).status_code == 302
    second.update(description="Sent weekly")
    response = client.post(url, second)

    # then the second is told the page is out of date and kept what they typed (the page was not
    # reloaded), and the first's edit stands
    assert response.status_code == 200
    words = " ".join(response.context["adminform"].form.non_field_errors())
    assert "out of date" in words and "Nothing was saved" in words and "reloaded" not in words
    assert response.context["adminform"].form["description"].value() == "Sent weekly"
    marketing_draft.refresh_from_db()
    assert (marketing_draft.name, marketing_draft.objective) == ("Spring newsletter", "Bring trial users back")


def test_a_builder_edit_that_changes_nothing_keeps_the_approval_of_an_older_journey(
    journey_approval_required, marketing_draft, marketer, approver,  # noqa: F811
):
    # given an approved journey whose steps were written before the builder (next: the next position)
    request_journey_approval(marketing_draft, actor=marketer)
    approve_journey(marketing_draft, actor=approver)
    pause = marketing_draft.steps.get(key="pause")

    # when the builder saves the wait step as it is
    drafts.change_step(marketing_draft, pause, revision=marketing_draft.draft_revision,
                       values={"config": {"seconds": 3600}}, actor=marketer)

    # then nothing it runs changed, and the approval stands
    marketing_draft.refresh_from_db()
    assert marketing_draft.approved_by == approver
    assert not AuditEntry.objects.filter(action="journey.approval_reset").exists()
    assert Journey.objects.get(pk=marketing_draft.pk).approved_at is not None
