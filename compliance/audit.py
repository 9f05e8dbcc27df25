"""Writing the audit log. Every decision and change goes through record() or record_many()."""
from django.db import models

from omni.lib.bulk import bulk_insert

from .models import AuditEntry


def _describe(obj) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


def build(action: str, *, contact=None, contact_id=None, obj=None, actor=None, actor_label: str = "",
          channel: str = "", reason: str = "", data: dict | None = None, occurred_at=None) -> AuditEntry:
    """An unsaved AuditEntry, for record_many()."""
    object_type, object_id = _describe(obj)
    entry = AuditEntry(
        action=action,
        contact=contact,
        object_type=object_type,
        object_id=object_id,
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system"),
        channel=channel or "",
        reason=reason or "",
        data=data or {},
    )
    if contact is None and contact_id is not None:
        entry.contact_id = contact_id
    if occurred_at is not None:
        entry.occurred_at = occurred_at
    return entry


def record(action: str, **kwargs) -> AuditEntry:
    """Write one audit entry now (inside the caller's transaction, so it commits with the change)."""
    entry = build(action, **kwargs)
    entry.save()
    return entry


def record_many(entries: list[AuditEntry]) -> None:
    """Write many entries at once (hot paths: fan-out, batch ticks), by COPY on PostgreSQL."""
    bulk_insert(entries)


def for_object(obj) -> models.QuerySet:
    object_type, object_id = _describe(obj)
    return AuditEntry.objects.filter(object_type=object_type, object_id=object_id)
