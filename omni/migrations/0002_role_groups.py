"""The three staff roles as auth groups, with the permissions each needs.

Marketers build audiences, templates, journeys and campaigns; they cannot approve campaigns
or touch compliance rules. Support agents read a contact's history and work conversations;
they cannot export the audit log. Compliance staff manage suppressions and sending rules and
export the audit log; they look at journeys, campaigns and templates but cannot change them.

Running it again (or migrating forward after a reverse) sets each group's permissions to
exactly this list.
"""
from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW = ("view",)
EDIT = ("add", "change", "view")

ROLES = {
    "Marketers": {
        "contacts": {"contact": EDIT, "segment": EDIT, "device": EDIT, "contactevent": VIEW},
        "message_templates": {"template": EDIT, "templatevariant": EDIT, "templateversion": VIEW},
        "campaigns": {"journey": EDIT, "journeystep": EDIT, "campaign": EDIT, "enrollment": VIEW},
        "channels": {"message": VIEW, "delivery": VIEW, "deliveryevent": VIEW, "outboxmessage": VIEW},
        "compliance": {"consent": VIEW, "consentchange": VIEW},
    },
    "Support agents": {
        "contacts": {"contact": VIEW, "device": VIEW, "contactevent": VIEW},
        "channels": {
            "conversation": ("change", "view"), "inboundmessage": VIEW, "message": VIEW, "delivery": VIEW,
            "deliveryevent": VIEW, "outboxmessage": VIEW,
        },
        "compliance": {"consent": VIEW, "consentchange": VIEW, "suppression": VIEW},
    },
    "Compliance": {
        "contacts": {"contact": VIEW, "device": VIEW, "contactevent": VIEW, "segment": VIEW},
        "compliance": {
            "consent": VIEW, "consentchange": VIEW, "suppression": EDIT, "quiethours": EDIT, "frequencycap": EDIT,
            "sendingpause": EDIT, "auditentry": ("view", "export"),
        },
        "message_templates": {"template": VIEW, "templatevariant": VIEW, "templateversion": VIEW},
        "campaigns": {"journey": VIEW, "journeystep": VIEW, "campaign": VIEW, "enrollment": VIEW},
        "channels": {
            "message": VIEW, "delivery": VIEW, "deliveryevent": VIEW, "outboxmessage": VIEW, "inboundmessage": VIEW,
            "conversation": VIEW,
        },
    },
}


def create_role_groups(apps, schema_editor):
    apply_roles(apps, schema_editor, ROLES)


def apply_roles(apps, schema_editor, roles):
    """Make each group of `roles` hold exactly its permissions (later role migrations call this too)."""
    # Permissions are normally created after migrate finishes (post_migrate); this migration
    # needs them now, so it creates them the same way for every app first.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    db = schema_editor.connection.alias
    for group_name, grants in roles.items():
        wanted = [
            (app_label, f"{verb}_{model}")
            for app_label, models in grants.items()
            for model, verbs in models.items()
            for verb in verbs
        ]
        permissions = []
        for app_label, codename in wanted:
            try:
                permissions.append(
                    Permission.objects.using(db).get(content_type__app_label=app_label, codename=codename)
                )
            except Permission.DoesNotExist:
                raise LookupError(f"Role {group_name!r} needs permission {app_label}.{codename}, which does not exist.")
        group, _ = Group.objects.using(db).get_or_create(name=group_name)
        group.permissions.set(permissions)


def remove_role_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("omni", "0001_initial"),
        ("contacts", "0001_initial"),
        ("compliance", "0001_initial"),
        ("message_templates", "0001_initial"),
        ("campaigns", "0001_initial"),
        ("channels", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_role_groups, remove_role_groups)]
