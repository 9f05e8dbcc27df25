"""The compliance exports' pages (omni/web/exports.py holds what they do): the message export's
form and download, and one contact's report. Both need omni.export_auditentry."""
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404

from contacts.models import Contact

from . import exports
from .views import admin_page


def _download(download: exports.Download):
    if download.stream is not None:
        response = StreamingHttpResponse(download.stream, content_type=download.content_type)
    else:
        response = FileResponse(download.file, content_type=download.content_type)
    response["Content-Disposition"] = f'attachment; filename="{download.filename}"'
    return response


def message_export(request):
    """The form on a plain GET; the file when the form is sent (it has a format)."""
    if not exports.may_export(request.user):
        raise PermissionDenied
    if "format" not in request.GET:
        return _page(request, exports.MessageExportForm())
    form = exports.MessageExportForm(request.GET)
    if not form.is_valid():
        return _page(request, form, status=400)
    try:
        download = exports.export_messages(form.filters, format=form.cleaned_data["format"], actor=request.user)
    except exports.TooManyRowsForXlsx as refused:
        form.add_error("format", str(refused))
        return _page(request, form, status=400)
    return _download(download)


def _page(request, form, status=200):
    return admin_page(request, "omni_web/message_export.html", "Export messages", status=status, form=form,
                      columns=exports.MESSAGE_HEADER, xlsx_max_rows=f"{exports.xlsx_max_rows():,}")


def contact_report(request, contact_id: int):
    if not exports.may_export(request.user):
        raise PermissionDenied
    contact = get_object_or_404(Contact, pk=contact_id)
    return _download(exports.contact_report(contact, actor=request.user))


message_export = admin.site.admin_view(message_export)
contact_report = admin.site.admin_view(contact_report)
