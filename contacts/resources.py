"""CSV/XLSX import and export of contacts (django-import-export).

A row is matched to an existing contact by external id, else by email; a row with neither
creates a contact. Every row is validated like a form: a bad phone number, email or timezone
rejects that row with the column named, and the import as a whole is refused until the file
is fixed (one transaction, rolled back on any invalid row).
"""
from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets

from .models import Contact
from .phones import normalize_phone

# A key ContactResource adds to a row: not a column, only read by the phone widget.
STORED_COUNTRY = "_stored_country"


class PhoneWidget(widgets.CharWidget):
    """Reads a phone number in any common notation and stores it as E.164."""

    def clean(self, value, row=None, **kwargs):
        text = super().clean(value, row=row, **kwargs)
        text = (text or "").strip()
        if not text:
            return ""
        try:
            return normalize_phone(text, default_region=national_region(row or {}))
        except ValidationError as exc:
            # django-import-export reports a ValueError against the column it came from.
            raise ValueError(" ".join(exc.messages)) from exc


def national_region(row) -> str | None:
    """The country a national phone number in this row is read in: the row's, else the one
    stored on the contact the row updates (noted by ContactResource.before_import_row)."""
    return (row.get("country") or "").strip() or row.get(STORED_COUNTRY) or None


class BlankAsNoneWidget(widgets.CharWidget):
    """external_id is unique but optional: an empty cell must be NULL, not a second ''."""

    def clean(self, value, row=None, **kwargs):
        text = (super().clean(value, row=row, **kwargs) or "").strip()
        return text or None


class ContactResource(resources.ModelResource):
    external_id = fields.Field(attribute="external_id", column_name="external_id", widget=BlankAsNoneWidget())
    phone = fields.Field(attribute="phone", column_name="phone", widget=PhoneWidget())
    attributes = fields.Field(attribute="attributes", column_name="attributes", widget=widgets.JSONWidget())

    class Meta:
        model = Contact
        fields = [
            "external_id", "email", "phone", "first_name", "last_name", "locale", "timezone", "country", "region",
            "lifecycle_stage", "messaging_paused", "attributes",
        ]
        import_id_fields = ["external_id"]
        skip_unchanged = True
        report_skipped = True
        # Runs Contact.full_clean(): email, timezone and lifecycle stage are checked like a form.
        clean_model_instances = True

    def import_data(self, dataset, **kwargs):
        # One bad row refuses the whole file, whether the import comes from the admin (which
        # also asks for confirmation) or from code.
        kwargs.setdefault("use_transactions", True)
        kwargs.setdefault("rollback_on_validation_errors", True)
        return super().import_data(dataset, **kwargs)

    def get_instance(self, instance_loader, row):
        external_id = (row.get("external_id") or "").strip()
        if external_id:
            return Contact.objects.filter(external_id=external_id).first()
        email = (row.get("email") or "").strip().lower()
        if email:
            return Contact.objects.filter(email=email, external_id__isnull=True).first()
        return None

    def before_import_row(self, row, **kwargs):
        # Contact.clean() stores emails lower-cased; match and store them the same way.
        if row.get("email"):
            row["email"] = row["email"].strip().lower()
        if (row.get("phone") or "").strip() and not (row.get("country") or "").strip():
            external_id = (row.get("external_id") or "").strip()
            stored = Contact.objects.filter(external_id=external_id).values_list("country", flat=True).first()
            if external_id and stored:
                row[STORED_COUNTRY] = stored
