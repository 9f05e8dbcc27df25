import pytest
from django.core.exceptions import ValidationError

from omni.models import AuditEntry
from contacts.models import Contact
from templates.actions import current_version, publish_template
from templates.models import Template, TemplateVariant
from templates.rendering import RenderError, contact_variables, render_variant


def test_a_missing_variable_is_an_error_naming_the_part():
    variant = {"subject": "Hi {{ first_name }}", "text_body": "Your code is {{ code }}"}

    with pytest.raises(RenderError) as error:
        render_variant(variant, {"first_name": "Ann"})

    assert error.value.field == "text_body" and "code" in str(error.value)


@pytest.mark.parametrize("source, variables", [
    ("{{ total / count }}", {"total": 1, "count": 0}),
    ("{{ first_name + 1 }}", {"first_name": "Ann"}),
    ("{{ range(100001) | list | length }}", {}),
])
def test_an_error_raised_while_rendering_is_a_render_error_naming_the_part(source, variables):
    with pytest.raises(RenderError) as error:
        render_variant({"subject": "Hi", "text_body": source}, variables)

    assert error.value.field == "text_body"


def test_html_is_escaped_and_text_is_not():
    variant = {"text_body": "Hi {{ name }}", "html_body": "<p>Hi {{ name }}</p>"}

    rendered = render_variant(variant, {"name": "O'Brien <script>"})

    assert rendered["text_body"] == "Hi O'Brien <script>"
    assert rendered["html_body"] == "<p>Hi O&#39;Brien &lt;script&gt;</p>"


def test_templates_cannot_reach_python_internals():
    with pytest.raises(RenderError, match="unsafe"):
        render_variant({"text_body": "{{ x.__class__.__mro__[1].__subclasses__() }}"}, {"x": ""})


@pytest.fixture
def template(db):
    template = Template.objects.create(key="welcome", name="Welcome", purpose="marketing")
    TemplateVariant.objects.create(template=template, channel="email", locale="en", subject="Hi {{ first_name }}",
                                   text_body="Welcome\nUnsubscribe: {{ unsubscribe_url }}")
    TemplateVariant.objects.create(template=template, channel="email", locale="fr", subject="Salut {{ first_name }}",
                                   text_body="Bienvenue\nDésabonnement : {{ unsubscribe_url }}")
    return template


def test_publishing_snapshots_variants_and_later_edits_do_not_change_the_version(template):
    version = publish_template(template)
    template.variants.filter(locale="en").update(subject="Changed")

    assert version.number == 1
    assert version.variant_for("email", "en")["subject"] == "Hi {{ first_name }}"
    assert publish_template(template).number == 2
    assert AuditEntry.objects.filter(action="template.published").count() == 2


def test_a_version_cannot_be_edited(template):
    version = publish_template(template)
    version.variants = []
    with pytest.raises(ValueError, match="immutable"):
        version.save()


@pytest.mark.postgres
def test_the_database_refuses_to_rewrite_a_published_template_version(template):
    from django.db import DatabaseError, transaction

    from templates.models import TemplateVersion

    version = publish_template(template)

    with pytest.raises(DatabaseError, match="Cannot update"), transaction.atomic():
        TemplateVersion.objects.filter(pk=version.pk).update(variants=[])

    assert TemplateVersion.objects.get(pk=version.pk).variants == version.variants


@pytest.mark.postgres
def test_a_deleted_user_is_still_unlinked_from_the_template_versions_they_published(template, django_user_model):
    marketer = django_user_model.objects.create_user("marketer")
    version = publish_template(template, actor=marketer)

    marketer.delete()

    version.refresh_from_db()
    assert version.published_by is None


def test_variant_falls_back_from_region_to_language_to_default(template):
    version = publish_template(template)

    assert version.variant_for("email", "fr-CA")["locale"] == "fr"
    assert version.variant_for("email", "de")["locale"] == "en"
    assert version.variant_for("sms", "en") is None


def test_publishing_refuses_broken_syntax(template):
    TemplateVariant.objects.create(template=template, channel="sms", locale="en", text_body="Hi {{ first_name")

    with pytest.raises(ValidationError, match="sms/en text_body"):
        publish_template(template)


def test_contact_variables_expose_profile_fields(db):
    contact = Contact.objects.create(first_name="Ann", attributes={"plan": "pro"})

    rendered = render_variant({"text_body": "{{ first_name }} on {{ contact.attributes.plan }}"}, contact_variables(contact))

    assert rendered["text_body"] == "Ann on pro"


def test_current_version_never_publishes_a_draft(template):
    with pytest.raises(ValidationError, match="has no published version"):
        current_version(template)

    assert not template.versions.exists()
