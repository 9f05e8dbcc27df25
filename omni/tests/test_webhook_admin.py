"""The admin of outbound webhooks: endpoints with their secret shown once, and the call log."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from omni import audit
from omni.models import WebhookCall, WebhookEndpoint, WebhookOutcome

pytestmark = pytest.mark.django_db

ENDPOINTS = "admin:omni_webhookendpoint_changelist"
CALLS = "admin:omni_webhookcall_changelist"


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


def log_calls(endpoint, count: int, outcome=WebhookOutcome.OK):
    WebhookCall.objects.bulk_create(
        WebhookCall(endpoint=endpoint, url=endpoint.url, idempotency_key=f"visit-{endpoint.pk}-{i}", attempt=1,
                    status_code=200 if outcome == WebhookOutcome.OK else 500, outcome=outcome)
        for i in range(count))


def test_creating_an_endpoint_shows_its_secret_once_and_audits_it(admin_client, admin_user):
    response = admin_client.post(reverse("admin:omni_webhookendpoint_add"), {
        "name": "CRM", "url": "https://crm.example.com/hooks/omni", "active": "on", "timeout_seconds": 5,
    }, follow=True)

    endpoint = WebhookEndpoint.objects.get()
    shown = [str(m) for m in response.context["messages"] if endpoint.secret in str(m)]
    assert len(shown) == 1
    assert endpoint.secret not in admin_client.get(reverse(ENDPOINTS)).content.decode()
    page = admin_client.get(reverse("admin:omni_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in page and endpoint.masked_secret in page
    entry = audit.for_object(endpoint).get(action="webhook_endpoint.created")
    assert entry.actor_id == admin_user.pk and endpoint.secret not in str(entry.data)


def test_an_http_url_is_refused_outside_debug_naming_the_field(admin_client, settings):
    settings.OMNI_WEBHOOKS_ALLOW_PRIVATE = False

    response = admin_client.post(reverse("admin:omni_webhookendpoint_add"), {
        "name": "CRM", "url": "http://crm.example.com/hooks", "active": "on", "timeout_seconds": 5})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"url": ["Webhook URLs must use https."]}
    assert not WebhookEndpoint.objects.exists()


def test_rotating_a_secret_shows_the_new_one_once_and_audits_it(admin_client):
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    old = endpoint.secret

    response = admin_client.post(reverse(ENDPOINTS), {"action": "rotate_secrets", "_selected_action": [endpoint.pk]},
                                 follow=True)

    endpoint.refresh_from_db()
    assert endpoint.secret != old
    assert [m for m in response.context["messages"] if endpoint.secret in str(m)]
    assert audit.for_object(endpoint).filter(action="webhook_endpoint.secret_rotated").count() == 1


def test_an_edit_read_before_a_rotation_keeps_the_new_secret(rf, admin_user, admin_client):
    from django.contrib import admin

    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    endpoint_admin = admin.site._registry[WebhookEndpoint]
    request = rf.post(reverse("admin:omni_webhookendpoint_change", args=[endpoint.pk]))
    request.user = admin_user
    edited = WebhookEndpoint.objects.get(pk=endpoint.pk)
    form = endpoint_admin.get_form(request, edited, change=True)(
        {"name": "CRM", "url": "https://crm.example.com/hooks", "active": "on", "timeout_seconds": 10},
        instance=edited)
    assert form.is_valid(), form.errors
    # meanwhile another administrator rotates the secret, and copies the new one into the receiver
    admin_client.post(reverse(ENDPOINTS), {"action": "rotate_secrets", "_selected_action": [endpoint.pk]})
    rotated = WebhookEndpoint.objects.get(pk=endpoint.pk).secret

    endpoint_admin.save_model(request, form.save(commit=False), form, change=True)

    endpoint.refresh_from_db()
    assert (endpoint.timeout_seconds, endpoint.secret) == (10, rotated)


def test_marketers_see_endpoints_but_neither_change_them_nor_see_the_call_log(staff_client):
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    client = staff_client("Marketers")

    assert client.get(reverse(ENDPOINTS)).status_code == 200
    page = client.get(reverse("admin:omni_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert endpoint.secret not in page
    assert client.get(reverse("admin:omni_webhookendpoint_add")).status_code == 403
    assert client.post(reverse(ENDPOINTS), {"action": "rotate_secrets",
                                            "_selected_action": [endpoint.pk]}).status_code in (200, 302, 403)
    assert WebhookEndpoint.objects.get().secret == endpoint.secret
    assert client.get(reverse(CALLS)).status_code == 403


def test_compliance_staff_read_the_call_log_and_administrators_manage_endpoints(staff_client, client):
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    log_calls(endpoint, 1)

    assert staff_client("Compliance").get(reverse(CALLS)).status_code == 200
    client.logout()
    administrator = staff_client("Administrators")
    assert administrator.get(reverse("admin:omni_webhookendpoint_add")).status_code == 200
    assert administrator.get(reverse(CALLS)).status_code == 200


def test_nobody_changes_or_deletes_a_logged_call(admin_client):
    endpoint = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    log_calls(endpoint, 1)
    logged = WebhookCall.objects.get()

    assert admin_client.get(reverse("admin:omni_webhookcall_add")).status_code == 403
    admin_client.post(reverse("admin:omni_webhookcall_delete", args=[logged.pk]), {"post": "yes"})
    admin_client.post(reverse("admin:omni_webhookendpoint_delete", args=[endpoint.pk]), {"post": "yes"})

    assert WebhookCall.objects.exists() and WebhookEndpoint.objects.exists()


def test_the_call_log_filters_by_outcome_and_endpoint(admin_client):
    crm = WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hooks")
    shop = WebhookEndpoint.objects.create(name="Shop", url="https://shop.example.com/hooks")
    log_calls(crm, 2)
    log_calls(crm, 1, WebhookOutcome.RETRYABLE)
    log_calls(shop, 3, WebhookOutcome.PERMANENT)

    failed = admin_client.get(reverse(CALLS), {"outcome__exact": "retryable"})
    of_shop = admin_client.get(reverse(CALLS), {"endpoint__id__exact": shop.pk})

    assert [c.idempotency_key for c in failed.context["cl"].result_list] == [f"visit-{crm.pk}-0"]
    assert {c.endpoint_id for c in of_shop.context["cl"].result_list} == {shop.pk}
    assert len(of_shop.context["cl"].result_list) == 3


@pytest.mark.parametrize("url, many", [(CALLS, 60), (ENDPOINTS, 40)])
def test_list_pages_take_as_many_queries_for_many_rows_as_for_a_few(admin_client, django_assert_max_num_queries,
                                                                      url, many):
    def fill(count):
        for _ in range(count):
            endpoint = WebhookEndpoint.objects.create(name=f"Hook {WebhookEndpoint.objects.count()}",
                                                      url="https://hooks.example.com/")
            log_calls(endpoint, 1)

    fill(2)
    admin_client.get(reverse(url))  # the session's first page reads what later pages keep
    with django_assert_max_num_queries(100) as few:
        assert admin_client.get(reverse(url)).status_code == 200

    fill(many)
    with django_assert_max_num_queries(len(few.captured_queries)) as more:
        assert admin_client.get(reverse(url)).status_code == 200

    assert len(more.captured_queries) <= 14, [q["sql"][:100] for q in more.captured_queries]
