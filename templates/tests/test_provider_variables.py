"""The numbered variables of an approved WhatsApp/RCS content template ({{1}}, {{2}}...), one
line each in the variant's provider variables: rendered strictly, refused at publish when their
syntax is broken, and read as empty from versions published before they existed."""
import pytest
from django.core.exceptions import ValidationError

from templates.actions import publish_template
from templates.models import Template, TemplateVariant
from templates.rendering import RenderError, render_variant

CONTENT_SID = "HX0000000000000000000000000000042"


@pytest.fixture
def receipt(db):
    """A transactional template with no variants yet."""
    return Template.objects.create(key="receipt", name="Receipt", purpose="transactional")


def test_publishing_refuses_a_variable_line_with_broken_syntax_naming_the_field(receipt):
    # given
    TemplateVariant.objects.create(template=receipt, channel="whatsapp", locale="en", text_body="Your receipt",
                                   provider_template_id=CONTENT_SID,
                                   provider_variables="{{ first_name }}\n{{ order_id ")

    # when / then
    with pytest.raises(ValidationError, match="whatsapp/en provider_variables"):
        publish_template(receipt)
    assert not receipt.versions.exists()


def test_publishing_keeps_the_variable_lines_in_the_version(receipt):
    TemplateVariant.objects.create(template=receipt, channel="whatsapp", locale="en", text_body="Your receipt",
                                   provider_template_id=CONTENT_SID, provider_variables="{{ first_name }}")

    version = publish_template(receipt)

    assert version.variant_for("whatsapp", "en")["provider_variables"] == "{{ first_name }}"


def test_each_line_fills_its_number_and_trailing_blank_lines_are_ignored():
    variant = {"text_body": "Hi", "provider_template_id": CONTENT_SID,
               "provider_variables": "{{ first_name }}\r\norder {{ order_id }}\r\n\r\n"}

    rendered = render_variant(variant, {"first_name": "Ann", "order_id": 4411})

    assert rendered["content_variables"] == {"1": "Ann", "2": "order 4411"}


def test_a_missing_variable_in_a_line_is_a_render_error_naming_the_line():
    variant = {"text_body": "Hi", "provider_template_id": CONTENT_SID,
               "provider_variables": "{{ first_name }}\n{{ order_id }}"}

    with pytest.raises(RenderError) as error:
        render_variant(variant, {"first_name": "Ann"})

    assert error.value.field == "provider_variables"
    assert "{{2}}" in str(error.value) and "order_id" in str(error.value)


def test_a_blank_line_between_variables_is_an_empty_variable():
    variant = {"text_body": "Hi", "provider_template_id": CONTENT_SID,
               "provider_variables": "{{ first_name }}\n\n{{ order_id }}"}

    with pytest.raises(RenderError, match=r"\{\{2\}\}.*empty"):
        render_variant(variant, {"first_name": "Ann", "order_id": 1})


def test_a_version_published_before_the_field_existed_renders_without_variables():
    # TemplateVersion.variants snapshots of older versions lack the key.
    variant = {"text_body": "Hi {{ first_name }}", "provider_template_id": CONTENT_SID}

    rendered = render_variant(variant, {"first_name": "Ann"})

    assert "content_variables" not in rendered


def test_without_an_approved_template_the_lines_are_not_sent():
    variant = {"text_body": "Hi", "provider_template_id": "", "provider_variables": "{{ first_name }}"}

    assert "content_variables" not in render_variant(variant, {"first_name": "Ann"})


def test_the_template_page_shows_the_variable_lines_beside_the_content_sid(receipt, admin_client):
    TemplateVariant.objects.create(template=receipt, channel="whatsapp", locale="en", text_body="Your receipt",
                                   provider_template_id=CONTENT_SID, provider_variables="{{ first_name }}")

    page = admin_client.get(f"/admin/message_templates/template/{receipt.pk}/change/").content.decode()

    assert 'name="variants-0-provider_variables"' in page
    assert "line 1 fills {{1}}" in page
    assert page.index("variants-0-provider_template_id") < page.index("variants-0-provider_variables")
