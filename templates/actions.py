"""Publishing templates: drafts become immutable versions that messages point at."""
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from omni import audit

from omni.choices import Channel, Purpose

from .models import OPT_OUT_DISCLOSURE_CHANNELS, OptOutDisclosure, Template, TemplateVersion
from .rendering import (PROVIDER_VARIABLES, UNSUBSCRIBE_URL, RenderError, prints_unconditionally,
                        provider_variable_lines, unconditional_text, validate_source)
from .sms_segments import MAX_SMS_SEGMENTS, fixed_segments


@transaction.atomic
def publish_template(template: Template, *, actor=None, actor_label: str = "") -> TemplateVersion:
    """Snapshot the template's variants as its next version. Refuses a template with bad syntax
    (a provider variable line too), an SMS too long to send, and marketing without its opt-out
    line or unsubscribe link."""
    template = Template.objects.select_for_update().get(pk=template.pk)
    variants = list(template.variants.order_by("channel", "locale"))
    if not variants:
        raise ValidationError(f"Template {template.key!r} has no variants to publish.")
    for variant in variants:
        for field in ("subject", "preheader", "text_body", "title", "html_body"):
            try:
                validate_source(getattr(variant, field), html=field == "html_body")
            except RenderError as exc:
                raise ValidationError(f"{variant.channel}/{variant.locale} {field}: {exc}") from exc
        bad_line = bad_provider_variable(variant)
        if bad_line:
            raise ValidationError(bad_line)
    too_long = overlong_sms(variants)
    if too_long:
        raise ValidationError(too_long)
    if template.purpose == Purpose.MARKETING:
        missing = missing_opt_out_lines(variants) + missing_unsubscribe_links(variants)
        if missing:
            raise ValidationError(missing)
    number = (template.versions.aggregate(n=Max("number"))["n"] or 0) + 1
    version = TemplateVersion.objects.create(
        template=template,
        number=number,
        variants=[v.as_content() for v in variants],
        purpose=template.purpose,
        allow_fallback=template.allow_fallback,
        default_locale=template.default_locale,
        published_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record("template.published", obj=version, actor=actor, actor_label=actor_label,
                 data={"template": template.key, "version": number})
    return version


def bad_provider_variable(variant) -> str:
    """What is wrong with the first of a variant's provider variables that cannot be sent (a
    syntax error, a blank line leaving its {{N}} empty), naming the variant and the line; "" if none."""
    for number, line in enumerate(provider_variable_lines(variant.provider_variables), start=1):
        where = f"{variant.channel}/{variant.locale} {PROVIDER_VARIABLES} line {number} ({{{{{number}}}}})"
        if not line.strip():
            return f"{where}: is blank; every variable of the approved template needs a value."
        try:
            # Line by line: each is rendered on its own, so an {% if %} must close on its line.
            validate_source(line)
        except RenderError as exc:
            return f"{where}: {exc}"
    return ""


def overlong_sms(variants) -> list[str]:
    """A sentence for each SMS variant whose text, without its variables, is already over
    MAX_SMS_SEGMENTS segments, naming the variant and its count."""
    problems = []
    for variant in variants:
        if variant.channel != Channel.SMS:
            continue
        counted, described = fixed_segments(variant.text_body)
        if counted.segments > MAX_SMS_SEGMENTS:
            problems.append(f"{variant.channel}/{variant.locale} text_body: {described}; an SMS may be at most "
                            f"{MAX_SMS_SEGMENTS} segments long: shorten it.")
    return problems


def missing_opt_out_lines(variants) -> list[str]:
    """What is wrong with each marketing SMS or WhatsApp variant that lacks its locale's opt-out
    line (OptOutDisclosure), one sentence each, naming the variant."""
    lines = dict(OptOutDisclosure.objects.values_list("locale", "text"))
    problems = []
    for variant in variants:
        if variant.channel not in OPT_OUT_DISCLOSURE_CHANNELS:
            continue
        name = f"{variant.channel}/{variant.locale}"
        line = OptOutDisclosure.line_for(lines, variant.locale)
        if not line:
            problems.append(f"{name}: no opt-out line is set for locale {variant.locale!r}; add one under "
                            f"Opt-out disclosures, then include it in this marketing variant.")
        elif _squeezed(line) not in _squeezed(unconditional_text(variant.text_body)):
            problems.append(f"{name} text_body: a marketing {variant.get_channel_display()} variant must include "
                            f"the opt-out line {line!r}.")
    return problems


# What to write where a marketing email lacks its unsubscribe link.
UNSUBSCRIBE_EXAMPLES = {"html_body": '<a href="{{ unsubscribe_url }}">Unsubscribe</a>',
                        "text_body": "Unsubscribe: {{ unsubscribe_url }}"}


def missing_unsubscribe_links(variants) -> list[str]:
    """A sentence for each marketing email variant that does not print its unsubscribe link
    unconditionally in its HTML (in its text where it has no HTML): the List-Unsubscribe header
    alone is not enough for the law nor for mailbox providers."""
    problems = []
    for variant in variants:
        if variant.channel != Channel.EMAIL:
            continue
        field = "html_body" if variant.html_body.strip() else "text_body"
        if not prints_unconditionally(getattr(variant, field), UNSUBSCRIBE_URL, html=field == "html_body"):
            problems.append(f"{variant.channel}/{variant.locale} {field}: a marketing email must print its "
                            f"unsubscribe link outside any condition or loop; add {UNSUBSCRIBE_EXAMPLES[field]}.")
    return problems


def _squeezed(text: str) -> str:
    return " ".join((text or "").split()).casefold()


def current_version(template: Template) -> TemplateVersion:
    """The latest published version. Never publishes: sending a draft nobody published is refused."""
    version = template.latest_version
    if version is None:
        raise ValidationError(f"Template {template.key!r} has no published version: publish it first.")
    return version


def latest_versions(template_ids) -> dict[int, TemplateVersion]:
    """The latest published version of each template that has one, by template id, in one query."""
    latest = {}
    for version in TemplateVersion.objects.filter(template_id__in=set(template_ids)).order_by("template_id", "-number"):
        latest.setdefault(version.template_id, version)
    return latest
