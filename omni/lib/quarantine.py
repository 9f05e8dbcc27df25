"""Quarantine: a row the tick cannot process is set aside with its reason, never retried blindly,
and never allowed to stop the rest of its batch (omni's base: imports no app).

A quarantinable model has `quarantined_at` (null while the row is claimable) and
`quarantine_reason`. The tick's claims exclude quarantined rows; the admin shows them under the
"Quarantined" filter and its "Retry" action puts them back in the tick's way.
"""
import logging

from django.contrib import admin, messages
from django.db import InterfaceError, OperationalError, transaction

from omni import audit

log = logging.getLogger(__name__)

REASON_MAX_CHARS = 2000


def run_isolating_failures(rows: list, work, reload=None) -> list[tuple[object, Exception]]:
    """Run `work(rows)` and return the rows it could not process, each with its exception.

    The batch runs as a whole inside a savepoint. When it raises, the savepoint is rolled back
    and the batch is split in halves, each run the same way, until the failing rows stand alone:
    one bad row costs about log2(batch) extra runs, and every good row is processed once, in the
    caller's transaction. `reload(rows)` restores the rows' in-memory state after a rolled-back
    run (the database is rolled back, Python objects are not); by default it reads their columns
    again in one query. A lost connection is not a bad row: it is raised.
    """
    if not rows:
        return []
    try:
        with transaction.atomic():
            work(rows)
        return []
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        (reload or reload_rows)(rows)
        if len(rows) == 1:
            return [(rows[0], exc)]
        middle = len(rows) // 2
        return (run_isolating_failures(rows[:middle], work, reload)
                + run_isolating_failures(rows[middle:], work, reload))


def reload_rows(rows: list) -> None:
    """Read the rows' columns again from the database, in one query, keeping loaded relations."""
    model = type(rows[0])
    fresh = model._default_manager.in_bulk([row.pk for row in rows])
    fields = [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    for row in rows:
        if row.pk in fresh:
            for name in fields:
                setattr(row, name, getattr(fresh[row.pk], name))


def describe_failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_MAX_CHARS]


def quarantine(model, failures: list[tuple[object, str]], now, *, stage: str) -> int:
    """Set rows aside with their reasons: [(row, reason)]. Audited; returns how many."""
    for row, reason in failures:
        model._default_manager.filter(pk=row.pk).update(quarantined_at=now, quarantine_reason=reason[:REASON_MAX_CHARS])
        log.error("Quarantined %s %s in the tick's %s stage: %s", model._meta.label, row.pk, stage, reason)
    audit.record_many([
        audit.build("tick.quarantined", contact_id=getattr(row, "contact_id", None), obj=row, reason=stage,
                    data={"model": model._meta.label_lower, "id": row.pk}, personal={"error": reason[:REASON_MAX_CHARS]})
        for row, reason in failures
    ])
    return len(failures)


def quarantine_failures(model, failures: list[tuple[object, Exception]], now, *, stage: str) -> int:
    """quarantine() for the failures run_isolating_failures() returned."""
    return quarantine(model, [(row, describe_failure(exc)) for row, exc in failures], now, stage=stage)


def retry_quarantined(queryset, *, actor, extra: dict | None = None) -> int:
    """Clear the quarantine of the rows in `queryset` so the tick claims them again. Audited."""
    rows = list(queryset.filter(quarantined_at__isnull=False))
    if not rows:
        return 0
    model = queryset.model
    with transaction.atomic():
        model._default_manager.filter(pk__in=[r.pk for r in rows]).update(
            quarantined_at=None, quarantine_reason="", **(extra or {}))
        audit.record_many([
            audit.build("tick.quarantine_retried", contact_id=getattr(row, "contact_id", None), obj=row, actor=actor,
                        data={"model": model._meta.label_lower, "id": row.pk},
                        personal={"error": row.quarantine_reason})
            for row in rows
        ])
    return len(rows)


class QuarantinedFilter(admin.SimpleListFilter):
    """The "Quarantined" list filter: rows the tick set aside, or the others."""

    title = "quarantined"
    parameter_name = "quarantined"

    def lookups(self, request, model_admin):
        return [("yes", "Quarantined"), ("no", "Not quarantined")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(quarantined_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(quarantined_at__isnull=True)
        return queryset


class QuarantineAdminMixin:
    """Adds the "Retry" action for quarantined rows to a read-only admin. Retrying needs the
    model's change permission even though the admin itself edits nothing."""

    quarantine_retry_fields: dict = {}

    @admin.action(description="Retry (clear the quarantine)", permissions=["retry"])
    def retry_quarantined(self, request, queryset):
        retried = retry_quarantined(queryset, actor=request.user, extra=self.quarantine_retry_fields)
        self.message_user(request, f"{retried} row(s) taken out of quarantine; the next tick picks them up.",
                          messages.SUCCESS if retried else messages.WARNING)

    def has_retry_permission(self, request):
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

