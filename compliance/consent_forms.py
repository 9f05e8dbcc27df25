"""The form compliance staff record a contact's consent with, on the contact's admin page.

Evidence is typed in fields of its own (what the person agreed to, where, a reference, the date
given), never as JSON; the form turns them into the evidence record_consent_change keeps.
"""
from django import forms
from django.utils import timezone
from unfold.widgets import (
    UnfoldAdminSelectWidget,
    UnfoldAdminSingleDateWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
)

from omni.choices import Channel, ConsentStatus, LawfulBasis, Purpose

from .actions import record_consent_change
from .models import ConsentChange, ConsentSource

# The sources staff record from; the others (keywords, links, bounces...) are Omni's own.
STAFF_SOURCES = [ConsentSource.ADMIN, ConsentSource.FORM, ConsentSource.AGENT]
# Staff record a consent given or withdrawn; "unknown" and "pending" are Omni's to set.
STAFF_STATUSES = [ConsentStatus.GRANTED, ConsentStatus.REVOKED]
PREFIX = "consent"


def _choices(choices_class, values):
    return [(value, choices_class(value).label) for value in values]


class RecordConsentForm(forms.Form):
    channel = forms.ChoiceField(choices=Channel.choices, widget=UnfoldAdminSelectWidget)
    purpose = forms.ChoiceField(choices=Purpose.choices, widget=UnfoldAdminSelectWidget)
    status = forms.ChoiceField(choices=_choices(ConsentStatus, STAFF_STATUSES), widget=UnfoldAdminSelectWidget)
    source = forms.ChoiceField(choices=_choices(ConsentSource, STAFF_SOURCES), initial=ConsentSource.ADMIN,
                               widget=UnfoldAdminSelectWidget, help_text="How the person told us.")
    lawful_basis = forms.ChoiceField(choices=[("", "—"), *LawfulBasis.choices], required=False,
                                     widget=UnfoldAdminSelectWidget, help_text="Required for an opt-in.")
    agreed_to = forms.CharField(
        label="What they agreed to", max_length=500, required=False, widget=UnfoldAdminTextareaWidget(attrs={"rows": 2}),
        help_text="The words they read or were told, e.g. \"Send me offers by text, about 4 a month\".")
    collected_at = forms.CharField(
        label="Where", max_length=200, required=False, widget=UnfoldAdminTextInputWidget,
        help_text="Where they gave it, e.g. \"paper form at the Leeds store\", \"phone call\".")
    reference = forms.CharField(
        max_length=200, required=False, widget=UnfoldAdminTextInputWidget,
        help_text="Optional: a form number, a call recording id, a ticket.")
    given_on = forms.DateField(label="Date given", required=False, widget=UnfoldAdminSingleDateWidget,
                               help_text="When they gave or withdrew it.")

    # An opt-in is only as good as its proof: these must be filled in for a grant.
    GRANT_NEEDS = ("lawful_basis", "agreed_to", "collected_at", "given_on")

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", PREFIX)
        super().__init__(*args, **kwargs)

    def clean_given_on(self):
        given_on = self.cleaned_data.get("given_on")
        if given_on and given_on > timezone.localdate():
            raise forms.ValidationError("The date given cannot be in the future.")
        return given_on

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("status") == ConsentStatus.GRANTED:
            for name in self.GRANT_NEEDS:
                if name not in self.errors and not cleaned.get(name):
                    self.add_error(name, f"An opt-in needs evidence: fill in \"{self[name].label}\".")
        return cleaned

    def evidence(self) -> dict:
        """What the form says about how the consent was given, as record_consent_change keeps it."""
        data = self.cleaned_data
        evidence = {"recorded_on": "contact_page", "agreed_to": data["agreed_to"].strip(),
                    "where": data["collected_at"].strip(), "reference": data["reference"].strip(),
                    "given_on": data["given_on"].isoformat() if data["given_on"] else ""}
        return {key: value for key, value in evidence.items() if value}

    def record(self, contact, *, actor) -> ConsentChange:
        """Record the valid form's consent for `contact`, audited as every consent change is."""
        data = self.cleaned_data
        return record_consent_change(contact, data["channel"], data["purpose"], data["status"], data["source"],
                                     evidence=self.evidence(), lawful_basis=data["lawful_basis"], actor=actor)
