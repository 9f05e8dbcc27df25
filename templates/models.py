"""Message templates: one variant per channel and locale, published as immutable versions."""
import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone

from omni.choices import Channel, Purpose


class Template(models.Model):
    key = models.SlugField(max_length=100, unique=True, help_text="Stable name journeys and the API refer to.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    purpose = models.CharField(max_length=15, choices=Purpose.choices, default=Purpose.MARKETING)
    # One-time codes and similar must never be re-routed to another channel.
    allow_fallback = models.BooleanField(default=True)
    default_locale = models.CharField(max_length=16, default="en")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.name

    @property
    def latest_version(self):
        return self.versions.order_by("-number").first()


class TemplateVariant(models.Model):
    """The draft content of a template for one channel and locale (Jinja2 syntax: {{ first_name }})."""

    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="variants")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    locale = models.CharField(max_length=16, default="en")
    subject = models.CharField(max_length=500, blank=True, help_text="Email subject.")
    preheader = models.CharField(max_length=200, blank=True, help_text="Email preview text.")
    text_body = models.TextField(blank=True, help_text="Email plain text part; the body of SMS, WhatsApp, RCS and push.")
    html_body = models.TextField(blank=True, help_text="Email HTML part (variables are HTML-escaped).")
    title = models.CharField(max_length=200, blank=True, help_text="Push notification title.")
    provider_template_id = models.CharField(
        max_length=100, blank=True,
        help_text="WhatsApp and RCS: the Twilio Content SID (HX...) of the approved template, sent instead "
                  "of the text body (on WhatsApp, only outside the contact's 24-hour session).")
    # Twilio holds the approved text: all Omni gives it is what fills its numbered variables.
    provider_variables = models.TextField(
        blank=True, default="", db_default="",  # db_default: also for a row inserted without the column
        help_text="The approved template's variables, one per line: line 1 fills {{1}}, line 2 fills {{2}}... "
                  "Each line is written like the text body, e.g. {{ first_name }} or order {{ order_id }}, "
                  "and must not come out empty.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["template", "channel", "locale"], name="variant_unique_channel_locale"),
        ]

    def __str__(self):
        return f"{self.template} [{self.channel}/{self.locale}]"

    def as_content(self) -> dict:
        return {
            "channel": self.channel,
            "locale": self.locale,
            "subject": self.subject,
            "preheader": self.preheader,
            "text_body": self.text_body,
            "html_body": self.html_body,
            "title": self.title,
            "provider_template_id": self.provider_template_id,
            "provider_variables": self.provider_variables,
        }


class TemplateVersion(models.Model):
    """A published, immutable snapshot of all of a template's variants.

    Messages point at a version, so what was sent can always be shown exactly.
    """

    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    variants = models.JSONField(help_text="List of variant contents, as TemplateVariant.as_content().")
    purpose = models.CharField(max_length=15, choices=Purpose.choices)
    allow_fallback = models.BooleanField(default=True)
    default_locale = models.CharField(max_length=16, default="en")
    published_at = models.DateTimeField(default=timezone.now)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="version_unique_number")]
        triggers = [
            # Messages point at what was published: not even SQL rewrites it. Only the publisher
            # may be forgotten (SET_NULL when their user is deleted).
            pgtrigger.Protect(name="protect_published_update", operation=pgtrigger.Update,
                              condition=pgtrigger.AnyChange(exclude=["published_by"])),
        ]

    def __str__(self):
        return f"{self.template} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Published template versions are immutable; publish a new version instead.")
        super().save(*args, **kwargs)

    def channels(self) -> set[str]:
        return {v["channel"] for v in self.variants}

    def variant_for(self, channel: str, locale: str) -> dict | None:
        """The variant for channel in locale, falling back to the language, then the default locale."""
        candidates = [v for v in self.variants if v["channel"] == channel]
        # BCP 47 tags are case-insensitive: "fr-ca" and "FR" (as imported) read fr-CA and fr.
        locale = (locale or "").casefold()
        language = locale.split("-")[0]
        for wanted in (locale, language, (self.default_locale or "").casefold()):
            for variant in candidates:
                if (variant["locale"] or "").casefold() == wanted:
                    return variant
        return candidates[0] if candidates else None


# Marketing on these channels must tell the reader how to opt out, in every variant.
OPT_OUT_DISCLOSURE_CHANNELS = frozenset({Channel.SMS, Channel.WHATSAPP})
# The line required where no row says otherwise: removing the English row must not lift it.
DEFAULT_OPT_OUT_LINES = {"en": "Reply STOP to opt out."}


class OptOutDisclosure(models.Model):
    """The opt-out line a marketing SMS or WhatsApp variant in `locale` must carry, e.g. "Reply
    STOP to opt out." Publishing refuses a variant without it (templates.actions)."""

    locale = models.CharField(max_length=16, unique=True, help_text="en, fr, fr-CA... A variant in fr-CA uses the "
                                                                    "fr-CA line, else the fr one.")
    text = models.CharField(max_length=200, help_text="Checked in any case, with any spacing, anywhere in the text.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["locale"]

    def __str__(self):
        return f"[{self.locale}] {self.text}"

    @staticmethod
    def line_for(lines: dict[str, str], locale: str) -> str:
        """The line for `locale` from {locale: text}, else for its language, else the built-in
        default for the language ("" if there is none)."""
        language = (locale or "").split("-")[0]
        return lines.get(locale) or lines.get(language) or DEFAULT_OPT_OUT_LINES.get(language, "")
