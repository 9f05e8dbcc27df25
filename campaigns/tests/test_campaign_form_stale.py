"""The campaign page refuses a save from a page older than the campaign: two marketers who opened
one draft do not silently overwrite each other (nor an approval given meanwhile), and the refused
page keeps what was typed and says who changed the campaign, and when."""
import pytest
from django.test import Client
from django.urls import reverse

from campaigns.campaign_approval import approve, request_approval
from campaigns.models import Campaign, CampaignVariant
from omni.models import AuditEntry

from .test_admin_versions import change_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def colleague(user_in):
    return user_in("milo", "Marketers")


def _opened(user, campaign):
    """A browser of `user` with the campaign's page open: its client and the form as shown."""
    browser = Client()
    browser.force_login(user)
    url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    return browser, url, change_form_data(browser.get(url))


def _errors(response) -> str:
    return " ".join(response.context["adminform"].form.non_field_errors())


def test_a_save_from_a_page_older_than_another_marketers_save_is_refused_and_keeps_what_was_typed(
    marketer, colleague, draft,  # noqa: F811
):
    # given two marketers who opened the draft's page at the same time
    first, url, first_page = _opened(marketer, draft)
    second, _, second_page = _opened(colleague, draft)

    # when the first renames it, then the second, from their page, changes its objective
    assert first.post(url, {**first_page, "name": "Spring sale (EU)"}).status_code == 302
    response = second.post(url, {**second_page, "objective": "Clear the winter stock"})

    # then the second's save is refused, saying by whom, with their typing kept; nothing was written
    assert response.status_code == 200
    words = _errors(response)
    assert "changed since you opened this page" in words and "by mara" in words and "Nothing was saved" in words
    assert response.context["adminform"].form["objective"].value() == "Clear the winter stock"
    draft.refresh_from_db()
    assert (draft.name, draft.objective) == ("Spring sale (EU)", "Sell")

    # and the page opened again saves
    _, _, fresh = _opened(colleague, draft)
    assert second.post(url, {**fresh, "objective": "Clear the winter stock"}).status_code == 302
    draft.refresh_from_db()
    assert (draft.name, draft.objective) == ("Spring sale (EU)", "Clear the winter stock")


def test_a_save_from_a_page_opened_before_the_campaign_was_approved_is_refused_and_the_approval_stands(
    marketer, colleague, approver, draft,  # noqa: F811
):
    # given a marketer's page opened before another asked for approval and an approver gave it
    browser, url, page = _opened(marketer, draft)
    request_approval(draft, actor=colleague)
    approve(draft, actor=approver)

    # when the marketer saves a change from that page
    response = browser.post(url, {**page, "holdout_percent": "25"})

    # then it is refused, naming the approver, and the approval was not reset
    assert response.status_code == 200
    words = _errors(response)
    assert "changed since you opened this page" in words and "approved by abe" in words
    draft.refresh_from_db()
    assert (draft.holdout_percent, draft.approved_by) == (0, approver)
    assert not AuditEntry.objects.filter(action="campaign.approval_reset").exists()


def test_a_variant_changed_from_a_stale_page_is_not_saved(marketer, colleague, draft, welcome_templates):  # noqa: F811
    # given a draft with two variants, open in two marketers' pages
    for position, name in enumerate("AB"):
        CampaignVariant.objects.create(campaign=draft, name=name, template=welcome_templates[0], position=position)
    first, url, first_page = _opened(marketer, draft)
    second, _, second_page = _opened(colleague, draft)

    # when the first changes only the variants' weights, then the second changes them too
    assert first.post(url, {**first_page, "variants-0-weight": "70", "variants-1-weight": "30"}).status_code == 302
    response = second.post(url, {**second_page, "variants-0-weight": "10", "variants-1-weight": "90"})

    # then the second's variants are refused with the campaign, and the first's stand
    assert response.status_code == 200
    assert "changed since you opened this page" in _errors(response)
    assert list(Campaign.objects.get(pk=draft.pk).variants.values_list("weight", flat=True)) == [70, 30]


def test_a_save_that_changes_nothing_leaves_a_colleagues_open_page_current(marketer, colleague, draft,  # noqa: F811
                                                                            welcome_templates):
    # given two marketers who opened the draft's page at the same time
    first, url, first_page = _opened(marketer, draft)
    second, _, second_page = _opened(colleague, draft)
    revision = draft.updated_at

    # when the first presses save without changing anything
    assert first.post(url, first_page).status_code == 302

    # then nothing was written, and the second's change from their page saves
    draft.refresh_from_db()
    assert draft.updated_at == revision
    assert second.post(url, {**second_page, "objective": "Clear the winter stock"}).status_code == 302
    draft.refresh_from_db()
    assert draft.objective == "Clear the winter stock"

