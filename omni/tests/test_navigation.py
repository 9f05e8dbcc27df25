"""The admin on its theme: every page built on Omni's base (Unfold's classes), a sidebar grouped
by work and built from each user's view permissions, Settings for administrators only, and a
refused page answering 403 inside the admin's frame."""
import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import models
from unfold import admin as unfold_admin

from omni.lib.admin import OmniAdmin
from omni.web import navigation


@pytest.fixture
def staff_in(django_user_model, role_groups):
    def make(group_name: str | None, **extra):
        user = django_user_model.objects.create_user(
            username=(group_name or "someone").lower().replace(" ", "-"), password="pw", is_staff=True, **extra)
        if group_name:
            user.groups.add(Group.objects.get(name=group_name))
        return user

    return make


def sidebar_of(client, user) -> dict[str, list[str]]:
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    return {group["title"]: [item["title"] for item in group["items"]] for group in response.context["sidebar_navigation"]}


def test_every_registered_admin_and_its_inlines_are_built_on_omnis_base_on_unfold():
    not_on_base = []
    for model, model_admin in admin.site._registry.items():
        if not isinstance(model_admin, OmniAdmin) or not isinstance(model_admin, unfold_admin.ModelAdmin):
            not_on_base.append(type(model_admin).__name__)
        for inline in model_admin.inlines:
            if not issubclass(inline, OmniAdmin) or not issubclass(
                    inline, (unfold_admin.TabularInline, unfold_admin.StackedInline)):
                not_on_base.append(inline.__name__)
    assert not_on_base == []


def test_every_admin_page_has_a_group_in_the_sidebar():
    assert navigation.ungrouped_models() == []


def test_a_page_in_no_group_is_reported(db):
    # given a site with one model the sidebar has no group for
    class Unplaced(models.Model):
        class Meta:
            app_label = "omni"
            managed = False

    site = admin.AdminSite(name="elsewhere")
    site.register(Unplaced)

    # then
    assert navigation.ungrouped_models(site) == ["omni.unplaced"]


def test_each_role_sees_its_groups_and_only_administrators_see_settings(client, staff_in, admin_user):
    marketer = sidebar_of(client, staff_in("Marketers"))
    assert list(marketer) == ["Marketing", "Support", "Compliance", "Activity"]
    assert {"Contacts", "Segments", "Templates", "Journeys", "Campaigns"} <= set(marketer["Marketing"])
    assert "Audit entries" not in marketer["Compliance"]

    support = sidebar_of(client, staff_in("Support agents"))
    assert support["Support"] == ["Inbox", "Conversations", "Blocked senders", "Agent statuses", "Support queues",
                                  "Conversation tags", "Saved replies", "Contact search", "Support figures"]
    assert "Settings" not in support

    compliance = sidebar_of(client, staff_in("Compliance"))
    assert {"Consents", "Consent changes", "Suppressions", "Quiet hours", "Frequency caps", "Sending pauses",
            "Decisions", "Audit entries"} <= set(compliance["Compliance"])
    assert "Settings" not in compliance

    for administrator in (admin_user, staff_in("Administrators")):
        settings_pages = sidebar_of(client, administrator)["Settings"]
        assert {"API keys", "Periodic tasks", "Users", "Groups"} <= set(settings_pages)


def test_settings_answer_403_to_anyone_but_administrators_inside_the_admin_frame(client, staff_in):
    # given a compliance user whom someone also gave the permission to view API keys and users
    user = staff_in("Compliance")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_apikey", "view_user", "view_periodictask"]))
    client.force_login(user)

    for url in ("/admin/omni/apikey/", "/admin/auth/user/", "/admin/django_celery_beat/periodictask/"):
        # when
        response = client.get(url)

        # then: refused, inside the admin's frame: the sidebar and a way home
        assert response.status_code == 403, url
        page = response.content.decode()
        assert 'id="nav-sidebar-apps"' in page
        assert 'href="/admin/"' in page and "Back to your home" in page
        assert "Settings" not in [group["title"] for group in response.context["sidebar_navigation"]]


def test_an_administrator_opens_the_settings(client, staff_in):
    client.force_login(staff_in("Administrators"))

    for url in ("/admin/omni/apikey/", "/admin/auth/user/", "/admin/auth/group/",
                "/admin/django_celery_beat/periodictask/", "/admin/django_celery_beat/crontabschedule/"):
        assert client.get(url).status_code == 200, url


def test_the_theme_serves_its_own_static_files(client, admin_user):
    # Unfold's styles and scripts come from the package through staticfiles, never a CDN.
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert "/static/unfold/" in page
    assert "https://" not in page.replace("https://www.w3.org", "")


def test_the_administrators_role_holds_every_roles_permissions_and_the_settings(db):
    import importlib
    from types import SimpleNamespace

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def permissions_of(name):
        return {f"{p.content_type.app_label}.{p.codename}"
                for p in Group.objects.get(name=name).permissions.select_related("content_type")}

    administrators = permissions_of("Administrators")
    for role in ("Marketers", "Support agents", "Compliance"):
        assert permissions_of(role) <= administrators, role
    assert {"omni.add_apikey", "omni.change_apikey", "django_celery_beat.change_periodictask",
            "django_celery_beat.add_crontabschedule", "auth.change_user", "auth.add_group"} <= administrators
    assert not {"omni.delete_auditentry", "omni.change_auditentry", "contacts.delete_contact"} & administrators

    # and the migration goes back and forth
    migration = importlib.import_module("omni.migrations.0011_role_groups_administrators")
    state_apps = MigrationExecutor(connection).loader.project_state(("omni", "0022_erasure_request_roles")).apps
    schema_editor = SimpleNamespace(connection=connection)
    migration.remove_administrators(state_apps, schema_editor)
    assert not Group.objects.filter(name="Administrators").exists()
    migration.apply_roles(state_apps, schema_editor)
    # and the role migrations after it give back what they added
    importlib.import_module("omni.migrations.0014_typed_data_roles").apply_roles(state_apps, schema_editor)
    importlib.import_module("omni.migrations.0016_webhook_roles").apply_roles(state_apps, schema_editor)
    importlib.import_module("omni.migrations.0018_test_contact_permission").apply_roles(state_apps, schema_editor)
    importlib.import_module("omni.migrations.0020_compliance_roles").apply_roles(state_apps, schema_editor)
    importlib.import_module("omni.migrations.0021_operator_roles").apply_roles(state_apps, schema_editor)
    importlib.import_module("omni.migrations.0022_erasure_request_roles").apply_roles(state_apps, schema_editor)
    assert permissions_of("Administrators") == administrators


def test_the_contact_import_and_export_pages_use_unfolds_forms(admin_client):
    from unfold.contrib.import_export.forms import ImportForm, SelectableFieldsExportForm

    import_page = admin_client.get("/admin/contacts/contact/import/")
    export_page = admin_client.get("/admin/contacts/contact/export/")

    assert import_page.status_code == 200 and isinstance(import_page.context["form"], ImportForm)
    assert export_page.status_code == 200 and isinstance(export_page.context["form"], SelectableFieldsExportForm)
