"""The contact import's pages in the admin: upload a CSV, read its errors row by row (also as a
CSV download), choose to import the valid rows or none, and follow a large file's progress.

The pages only call contacts/imports.py (small files there and then, larger ones through the
Celery tasks of contacts/tasks.py); the list of uploads lets the uploader leave and come back.
Uploading and choosing need contacts.add_contactimport (Compliance, Marketers, Administrators);
seeing the uploads, contacts.view_contactimport.
"""
import csv

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from omni.lib.admin import ModelAdmin
from omni.lib.progress import Progress, ProgressSegment
from omni.lib.spreadsheet import neutralize_formula

from . import imports
from .models import Contact, ContactImport, ImportStatus
from .tasks import check_contact_import_task, run_contact_import_task

RUNNING = (ImportStatus.VALIDATING, ImportStatus.IMPORTING)
BUTTON = ("bg-primary-600 border border-transparent font-medium inline-flex items-center px-3 py-2 "
          "rounded-default text-white whitespace-nowrap hover:bg-primary-600/80")
SECONDARY = ("border border-base-200 bg-white font-medium inline-flex items-center px-3 py-2 rounded-default "
             "whitespace-nowrap")


def read_upload(upload, input_format) -> str:
    """The uploaded file as CSV text (a spreadsheet in another format django-import-export reads,
    XLSX for one, is turned into CSV); FileRefused saying what is wrong with it."""
    limit = settings.OMNI_IMPORT_MAX_BYTES
    if upload.size > limit:
        raise imports.FileRefused(f"The file is {imports.size_words(upload.size)}; at most "
                                  f"{imports.size_words(limit)} is imported at once: split it.")
    data = upload.read()
    if input_format.get_title().lower() == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise imports.FileRefused("The file is not UTF-8 text: save it as CSV (UTF-8).") from None
    else:
        try:
            text = input_format.create_dataset(data).export("csv")
        except Exception as exc:  # each format's reader raises its own errors
            raise imports.FileRefused(f"The file could not be read as {input_format.get_title()}: "
                                      f"{exc.__class__.__name__}.") from None
    imports.read_file(text)
    return text


def upload_view(model_admin, request):
    """The contact list's Import page (django-import-export's, on Unfold's form): the upload is
    kept as a ContactImport, checked here or in a task, and the uploader goes to its page."""
    if not model_admin.has_import_permission(request):
        raise PermissionDenied
    form = model_admin.create_import_form(request)
    form.fields["import_file"].help_text = (
        f"A CSV file (UTF-8) of up to {imports.size_words(settings.OMNI_IMPORT_MAX_BYTES)} and "
        f"{settings.OMNI_IMPORT_MAX_ROWS:,} rows, its first row naming the columns. Every row is checked first; "
        "you then see the errors and choose what to import.")
    if request.method == "POST" and form.is_valid():
        input_format = model_admin.get_import_formats()[int(form.cleaned_data["format"])]()
        upload = form.cleaned_data["import_file"]
        try:
            text = read_upload(upload, input_format)
        except imports.FileRefused as exc:
            form.add_error("import_file", str(exc))
        else:
            contact_import = imports.start_import(upload.name, text, actor=request.user)
            if imports.runs_inline(contact_import):
                imports.check_import(contact_import)
            else:
                transaction.on_commit(lambda: check_contact_import_task.delay(contact_import.pk))
            return HttpResponseRedirect(reverse("admin:contacts_contactimport_change", args=[contact_import.pk]))
    return TemplateResponse(request, [model_admin.import_template_name], {
        **model_admin.get_import_context_data(), **model_admin.admin_site.each_context(request),
        "title": "Import contacts", "form": form, "opts": model_admin.model._meta,
        "media": model_admin.media + form.media, "import_error_display": model_admin.import_error_display,
        "fields_list": [("Contacts", list(imports.COLUMNS_SHOWN))],
    })


class ChoiceForm(forms.Form):
    mode = forms.ChoiceField(choices=ContactImport.MODES, widget=forms.RadioSelect, label="What to import")


def import_progress(contact_import: ContactImport) -> Progress:
    """The upload's bar: rows checked so far; then valid or bad; then imported or skipped."""
    total, status = contact_import.total_rows, contact_import.status
    if status == ImportStatus.VALIDATING:
        return Progress("Rows checked", total, [ProgressSegment("sent", "checked", contact_import.processed_rows)],
                        "not checked yet")
    if status in (ImportStatus.VALIDATED, ImportStatus.CANCELLED):
        valid = contact_import.valid_rows
        return Progress("Rows checked", total, [ProgressSegment("delivered", "valid", valid),
                                                ProgressSegment("failed", "with errors", max(total - valid, 0))],
                        "not checked yet")
    imported = contact_import.imported_rows
    skipped = max(contact_import.processed_rows - imported, 0)
    return Progress("Rows imported", total, [ProgressSegment("delivered", "imported", imported),
                                             ProgressSegment("left_out", "skipped", skipped)], "not imported yet")


class ContactImportAdmin(ModelAdmin):
    list_display = ["file_name", "status", "total_rows", "valid_rows", "imported_rows", "error_count", "created_by",
                    "created_at", "finished_at"]
    list_filter = ["status", "mode"]
    list_select_related = ["created_by"]
    search_fields = ["file_name"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        # The list never loads the files themselves.
        return super().get_queryset(request).defer("data")

    @admin.display(description="errors")
    def error_count(self, obj):
        return len(obj.errors)

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:import_id>/choose/", view(self.choose_view), name="contacts_contactimport_choose"),
            path("<int:import_id>/errors.csv", view(self.errors_view), name="contacts_contactimport_errors"),
            path("<int:import_id>/progress/", view(self.progress_view), name="contacts_contactimport_progress"),
            *super().get_urls(),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        # The contact list's Import page (django-import-export's form), also here.
        if not self.has_add_permission(request):
            raise PermissionDenied
        return upload_view(self.admin_site._registry[Contact], request)

    # --- the upload's page -----------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        contact_import = self._import(request, object_id)
        errors = contact_import.errors
        return TemplateResponse(request, "contacts/contact_import.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta,
            "title": f"Import of {contact_import.file_name}", "object": contact_import, "original": contact_import,
            "progress": import_progress(contact_import),
            "progress_url": reverse("admin:contacts_contactimport_progress", args=[contact_import.pk]),
            "running": contact_import.status in RUNNING,
            "errors_shown": errors[:imports.ERRORS_SHOWN], "errors_more": max(len(errors) - imports.ERRORS_SHOWN, 0),
            "bad_rows": len({error["row"] for error in errors}),
            "choice": ChoiceForm(initial={"mode": contact_import.mode}) if (
                contact_import.status == ImportStatus.VALIDATED and self.has_add_permission(request)) else None,
            "button": BUTTON, "secondary": SECONDARY,
        })

    def choose_view(self, request, import_id):
        contact_import = self._import(request, import_id)
        if request.method != "POST" or not self.has_add_permission(request):
            raise PermissionDenied
        page = reverse("admin:contacts_contactimport_change", args=[contact_import.pk])
        if "cancel" in request.POST:
            if imports.cancel_import(contact_import):
                messages.info(request, "Nothing was imported; the file is discarded.")
            return HttpResponseRedirect(page)
        form = ChoiceForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose what to import: the valid rows, or nothing if any row is bad.")
            return HttpResponseRedirect(page)
        mode = form.cleaned_data["mode"]
        if contact_import.status != ImportStatus.VALIDATED:
            messages.warning(request, "This import is no longer waiting for a choice.")
        elif imports.runs_inline(contact_import):
            done = imports.run_import(contact_import, mode)
            _tell_result(request, done)
        else:
            transaction.on_commit(lambda: run_contact_import_task.delay(contact_import.pk, mode))
            messages.info(request, "The import runs in the background: you may leave this page and come back "
                                   "to it from Contact imports.")
        return HttpResponseRedirect(page)

    def errors_view(self, request, import_id):
        contact_import = self._import(request, import_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="import-{contact_import.pk}-errors.csv"'
        writer = csv.writer(response)
        for row in imports.errors_as_rows(contact_import):
            writer.writerow([neutralize_formula(cell) for cell in row])
        return response

    def progress_view(self, request, import_id):
        contact_import = self._import(request, import_id, fields=["status", "total_rows", "processed_rows",
                                                                  "imported_rows", "valid_rows"])
        return JsonResponse({"status": contact_import.status, "status_label": contact_import.get_status_display(),
                             **import_progress(contact_import).as_json()})

    def _import(self, request, object_id, fields=None) -> ContactImport:
        queryset = ContactImport.objects.defer("data") if fields is None else ContactImport.objects.only(
            "pk", *fields)
        try:
            contact_import = get_object_or_404(queryset, pk=int(object_id))
        except (TypeError, ValueError):
            raise Http404("No such import.")
        if not self.has_view_permission(request, contact_import):
            raise PermissionDenied
        return contact_import


def _tell_result(request, contact_import: ContactImport) -> None:
    if contact_import.status == ImportStatus.DONE:
        messages.success(request, format_html("Imported {} of {} rows.", contact_import.imported_rows,
                                              contact_import.total_rows))
    elif contact_import.status == ImportStatus.FAILED:
        messages.error(request, "Nothing was imported: some rows are bad (see below).")
