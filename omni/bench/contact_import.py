"""The contact import through its admin pages, against django-import-export's own bulk import.

`scale` rows of a CSV with eight profile columns (external_id, email, phone, first_name,
last_name, locale, timezone, country) and consent columns (email marketing granted with its
lawful basis, SMS marketing revoked, the evidence and when it was given) go through the admin
path a Compliance user takes: the upload, which checks every row and shows the preview page
(`preview_rows_per_s`, timed apart), then the choice "import the valid rows", which checks every
row again and writes the contacts, their consent changes and current consents, and the audit
entries (`rows_per_s`). The page does the work itself (OMNI_IMPORT_INLINE_ROWS is raised to the
scale for the run), so the request's time is the work's.

The peer: django-import-export's plain ModelResource with use_bulk=True importing the same rows
without the consent columns into the same table (new external ids), `peer_rows_per_s`; the
target is `ratio_to_use_bulk` of at least 1.5 at 100,000 rows.
"""
import time

import tablib
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse

from . import Figure

PROFILE = ["external_id", "email", "phone", "first_name", "last_name", "locale", "timezone", "country"]
CONSENTS = ["consent_email_marketing", "lawful_basis_email_marketing", "consent_sms_marketing", "consent_evidence",
            "consent_at"]


def profile_row(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{n}", f"{prefix}{n}@example.com", f"+1415{2000000 + n % 8000000:07d}", f"First{n}",
            f"Last{n}", "en", "America/Los_Angeles", "US"]


def csv_text(scale: int) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PROFILE + CONSENTS)
    for n in range(scale):
        writer.writerow(profile_row("imp", n) + ["granted", "consent", "revoked",
                                                 "Signed up on the spring form (text v3)", "2026-11-01T10:00:00+00:00"])
    return out.getvalue()


def run(scale: int, *, figures, log) -> list[Figure]:
    from django.contrib.auth.models import Group, User

    from compliance.models import Consent, ConsentChange
    from contacts.models import Contact, ContactImport
    from omni.models import AuditEntry, AuditPersonalData

    text = csv_text(scale)
    peer_seconds = _peer(scale, log)

    user, _ = User.objects.get_or_create(username="bench-importer", defaults={"is_staff": True})
    user.groups.add(Group.objects.get(name="Compliance"))
    client = Client()
    client.force_login(user)
    audit_before = AuditEntry.objects.count()
    with override_settings(OMNI_IMPORT_INLINE_ROWS=scale + 1, OMNI_IMPORT_MAX_ROWS=max(scale + 1, 250_000),
                           OMNI_IMPORT_MAX_BYTES=max(len(text) * 2, 32 * 1024 * 1024)):
        from django.core.files.uploadedfile import SimpleUploadedFile

        upload = SimpleUploadedFile("bench.csv", text.encode(), content_type="text/csv")
        started = time.perf_counter()
        response = client.post(reverse("admin:contacts_contact_import"), {"import_file": upload, "format": "0"})
        contact_import = ContactImport.objects.order_by("-pk").first()
        page = client.get(response["Location"]) if response.status_code == 302 else response
        preview_seconds = time.perf_counter() - started
        if page.status_code != 200 or contact_import is None or contact_import.valid_rows != scale:
            raise RuntimeError(f"The preview failed: {response.status_code}, {page.status_code}, "
                               f"{contact_import and contact_import.errors[:3]}")
        log(f"contact_import: preview of {scale} rows in {preview_seconds:.2f}s")
        reset_queries()
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.post(reverse("admin:contacts_contactimport_choose", args=[contact_import.pk]),
                                   {"mode": ContactImport.VALID_ONLY, "import": ""})
            seconds = time.perf_counter() - started
    contact_import.refresh_from_db()
    if contact_import.status != "done" or contact_import.imported_rows != scale:
        raise RuntimeError(f"The import did not finish: {contact_import.status}, {contact_import.imported_rows}")
    contacts = Contact.objects.filter(external_id__startswith="imp").count()
    changes = ConsentChange.objects.filter(source="import").count()
    current = Consent.objects.filter(contact__external_id__startswith="imp").count()
    audited = AuditEntry.objects.count() - audit_before
    personal = AuditPersonalData.objects.count()
    log(f"contact_import: import of {scale} rows in {seconds:.2f}s; peer {peer_seconds:.2f}s")
    rate, peer_rate = scale / seconds, scale / peer_seconds
    notes = (f"{contacts} contacts, {changes} consent changes, {current} current consents, {audited} audit entries "
             f"({personal} with personal data) written; {len(contact_import.errors)} rows refused; "
             f"{len(queries)} queries in the import request; {connection.vendor}")
    return [
        Figure("contact_import", "rows_per_s", rate, "rows/s", scale, notes=notes),
        Figure("contact_import", "preview_rows_per_s", scale / preview_seconds, "rows/s", scale,
               notes="upload, every row checked, and the preview page"),
        Figure("contact_import", "peer_rows_per_s", peer_rate, "rows/s", scale, subject="peer",
               notes="django-import-export ModelResource, use_bulk=True, same rows without consent columns"),
        Figure("contact_import", "ratio_to_use_bulk", rate / peer_rate, "ratio", scale, notes="target >= 1.5 at 100,000"),
        Figure("contact_import", "queries_in_import", len(queries), "queries", scale),
    ]


def _peer(scale: int, log) -> float:
    """Seconds django-import-export's use_bulk import takes for `scale` rows without consents."""
    from import_export import resources

    from contacts.models import Contact

    class PlainContactResource(resources.ModelResource):
        class Meta:
            model = Contact
            fields = PROFILE
            import_id_fields = ["external_id"]
            use_bulk = True
            batch_size = 1000

    dataset = tablib.Dataset(headers=PROFILE)
    for n in range(scale):
        dataset.append(profile_row("peer", n))
    started = time.perf_counter()
    result = PlainContactResource().import_data(dataset, dry_run=False)
    seconds = time.perf_counter() - started
    if result.has_errors() or result.has_validation_errors():
        raise RuntimeError("The peer import failed.")
    created = Contact.objects.filter(external_id__startswith="peer").count()
    if created != scale:
        raise RuntimeError(f"The peer import created {created} of {scale} contacts.")
    log(f"contact_import: peer (use_bulk) {scale} rows in {seconds:.2f}s")
    return seconds
