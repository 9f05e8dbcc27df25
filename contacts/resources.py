"""CSV/XLSX export of contacts (django-import-export), and the row-by-row import code uses.

The admin's import no longer goes through this resource: its Import page keeps the upload as a
ContactImport and contacts/imports.py checks every row and writes the valid ones in bulk, with
consent columns. This resource's import_data() stays for code that imports a dataset directly.

A row is matched to an existing contact by external id, else by email; a row with neither
creates a contact. Every row is validated like a form: a bad phone number, email or timezone
rejects that row with the column named, and a row for an erased contact is refused as the API
refuses it; the import as a whole is refused until the file is fixed (one transaction, rolled
back on any invalid row). Each contact created or changed is audited like an API change, with
the names of the changed fields, all in one write. Exported cells are safe to open in a
spreadsheet (omni.lib.spreadsheet), and an exported file imports back unchanged.
"""
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from import_export import fields, resources, widgets
from import_export.results import RowResult

from omni import audit
from omni.lib.spreadsheet import neutralize_formula, restore_formula_text

from .actions import ContactErased
from .data_types import contact_problems
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


class AttributesWidget(widgets.JSONWidget):
    """Attributes are never NULL: an empty cell (how {} is exported) is no attributes."""

    def clean(self, value, row=None, **kwargs):
        return super().clean(value, row=row, **kwargs) or {}


class ContactResource(resources.ModelResource):
    external_id = fields.Field(attribute="external_id", column_name="external_id", widget=BlankAsNoneWidget())
    phone = fields.Field(attribute="phone", column_name="phone", widget=PhoneWidget())
    attributes = fields.Field(attribute="attributes", column_name="attributes", widget=AttributesWidget())

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
        # Each row's result keeps its contact, which the audit entry names.
        store_instance = True

    def import_data(self, dataset, dry_run=False, **kwargs):
        # One bad row refuses the whole file, whether the import comes from the admin (which
        # also asks for confirmation) or from code.
        kwargs.setdefault("use_transactions", True)
        kwargs.setdefault("rollback_on_validation_errors", True)
        self._dry_run = dry_run
        self._audit_entries = []
        return super().import_data(dataset, dry_run=dry_run, **kwargs)

    def validate_instance(self, instance, import_validation_errors=None, validate_unique=True):
        # Beside Contact.full_clean(): the stage and the declared attribute types.
        errors = dict(import_validation_errors or {})
        for field_name, problem in contact_problems(instance.lifecycle_stage, instance.attributes).items():
            errors.setdefault(field_name, ValidationError(problem))
        super().validate_instance(instance, errors, validate_unique)

    def import_instance(self, instance, row, **kwargs):
        if instance.pk is not None and instance.erased_at is not None:
            # As the API refuses it: an erased person's data is not filled in again.
            field = "external_id" if instance.external_id else NON_FIELD_ERRORS
            raise ValidationError({field: str(ContactErased(instance.external_id or ""))})
        super().import_instance(instance, row, **kwargs)

    def after_import_row(self, row, row_result, **kwargs):
        if row_result.import_type not in (RowResult.IMPORT_TYPE_NEW, RowResult.IMPORT_TYPE_UPDATE):
            return
        contact = row_result.instance
        if row_result.import_type == RowResult.IMPORT_TYPE_NEW:
            action = "contact.created"
            changed = [name for name in self._meta.fields if name in row and getattr(contact, name)]
        else:
            action = "contact.updated"
            changed = [name for name in self._meta.fields
                       if getattr(row_result.original, name) != getattr(contact, name)]
        # Field names only, as for API changes: the audit log says what changed and who did it.
        self._audit_entries.append(audit.build(action, contact=contact, obj=contact, actor=kwargs.get("user"),
                                               reason="import", data={"fields": sorted(changed)}))

    def after_import(self, dataset, result, **kwargs):
        # Inside the import's transaction: a refused file rolls its entries back with it.
        if not self._dry_run and not result.has_errors() and not result.has_validation_errors():
            audit.record_many(self._audit_entries)
        self._audit_entries = []

    def export_field(self, field, instance, **kwargs):
        value = super().export_field(field, instance, **kwargs)
        return neutralize_formula(value) if isinstance(value, str) else value

    def get_instance(self, instance_loader, row):
        external_id = (row.get("external_id") or "").strip()
        if external_id:
            return Contact.objects.filter(external_id=external_id).first()
        email = (row.get("email") or "").strip().lower()
        if email:
            return Contact.objects.filter(email=email, external_id__isnull=True).first()
        return None

    def before_import_row(self, row, **kwargs):
        for name, value in row.items():
            if isinstance(value, str):
                row[name] = restore_formula_text(value)
        # Contact.clean() stores emails lower-cased; match and store them the same way.
        if row.get("email"):
            row["email"] = row["email"].strip().lower()
        if (row.get("phone") or "").strip() and not (row.get("country") or "").strip():
            external_id = (row.get("external_id") or "").strip()
            stored = Contact.objects.filter(external_id=external_id).values_list("country", flat=True).first()
            if external_id and stored:
                row[STORED_COUNTRY] = stored
