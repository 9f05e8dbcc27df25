"""Each web process trusts a key it verified for OMNI_API_KEY_CACHE_SECONDS: no lookup per request."""
import time

import pytest
from django.utils import timezone

from omni.models import ApiKey, ApiScope

pytestmark = pytest.mark.django_db


def post_event(client, raw_key):
    # An empty body passes the key checks and stops at validation (400): a refused key is 401.
    return client.post("/api/v1/events", {}, content_type="application/json",
                       headers={"Authorization": f"Bearer {raw_key}"})


def test_a_verified_key_is_not_looked_up_again(client, django_assert_num_queries):
    # given a key used once
    _, raw_key = ApiKey.generate("Shop", [ApiScope.EVENTS_WRITE])
    post_event(client, raw_key)

    # when it is used again
    with django_assert_num_queries(0):
        response = post_event(client, raw_key)

    # then it was accepted without a query
    assert response.status_code == 400


def test_a_key_revoked_elsewhere_is_refused_once_its_cache_time_is_over(client, settings):
    # given a key this process verified, then revoked by another process
    settings.OMNI_API_KEY_CACHE_SECONDS = 1
    key, raw_key = ApiKey.generate("Shop", [ApiScope.EVENTS_WRITE])
    post_event(client, raw_key)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    # then it is still trusted until its cache time is over, and refused after
    assert post_event(client, raw_key).status_code == 400
    time.sleep(1.1)
    assert post_event(client, raw_key).status_code == 401


def test_a_key_revoked_in_the_admin_is_refused_at_once_by_the_same_process(admin_client):
    key, raw_key = ApiKey.generate("Shop", [ApiScope.EVENTS_WRITE])
    post_event(admin_client, raw_key)

    admin_client.post("/admin/omni/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})

    key.refresh_from_db()
    assert key.revoked_at is not None
    assert post_event(admin_client, raw_key).status_code == 401


def test_a_wrong_key_is_never_cached(client, django_assert_num_queries):
    key, _ = ApiKey.generate("Shop", [ApiScope.EVENTS_WRITE])
    forged = f"omni_{key.prefix}_not-the-secret"
    post_event(client, forged)

    with django_assert_num_queries(1):
        assert post_event(client, forged).status_code == 401
