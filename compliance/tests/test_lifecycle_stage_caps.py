"""Frequency caps name lifecycle stages by key: a stage a cap names cannot be deleted, and a cap
may name a stage marketers added."""
import pytest
from django.core.exceptions import ValidationError

from compliance.models import FrequencyCap
from contacts.models import LifecycleStage, LifecycleStageInUse

pytestmark = pytest.mark.django_db


def test_deleting_a_stage_a_frequency_cap_names_is_refused_with_the_count():
    FrequencyCap.objects.create(name="Trials one a day", limit=1, lifecycle_stages=["trial"])
    FrequencyCap.objects.create(name="Trials and leads", limit=2, lifecycle_stages=["lead", "trial"])
    FrequencyCap.objects.create(name="Everyone", limit=5)

    with pytest.raises(LifecycleStageInUse) as refused:
        LifecycleStage.objects.get(key="trial").delete()

    assert "used by 2 frequency caps" in refused.value.messages[0]
    assert LifecycleStage.objects.filter(key="trial").exists()


def test_a_cap_may_name_a_stage_marketers_added_and_no_unknown_one():
    LifecycleStage.objects.create(key="onboarding", name="Onboarding", order=25)

    FrequencyCap(name="Onboarding", limit=1, lifecycle_stages=["onboarding"]).full_clean()
    with pytest.raises(ValidationError, match="Unknown lifecycle stage"):
        FrequencyCap(name="Kings", limit=1, lifecycle_stages=["king"]).full_clean()


def test_the_cap_form_offers_the_stages_as_they_are(admin_client):
    LifecycleStage.objects.create(key="onboarding", name="Onboarding", order=25)

    page = admin_client.get("/admin/compliance/frequencycap/add/")

    assert 'value="onboarding"' in page.content.decode()
