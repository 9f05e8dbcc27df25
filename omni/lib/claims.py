"""Claiming rows for work in batches, so that no two workers ever handle the same row.

On PostgreSQL a claim is SELECT ... FOR UPDATE SKIP LOCKED inside the caller's transaction; on
SQLite, IMMEDIATE transactions serialize writers, which gives the same guarantee for the
embedded default.
"""
from django.db import connection


def claim(queryset, limit: int) -> list:
    """Lock and return up to `limit` rows no other transaction holds. Call inside atomic()."""
    if connection.features.has_select_for_update_skip_locked:
        queryset = queryset.select_for_update(skip_locked=True, of=("self",))
    return list(queryset[:limit])


def claim_ids(queryset, limit: int, **values) -> list[int]:
    """Lock up to `limit` rows no other transaction holds, write `values` on them and return
    their ids. One UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING on
    PostgreSQL. Call inside atomic()."""
    model = queryset.model
    if connection.vendor != "postgresql":
        ids = claim(queryset.values_list("pk", flat=True), limit)
        model.objects.filter(pk__in=ids).update(**values)
        return ids
    select = queryset.select_for_update(skip_locked=True, of=("self",)).values_list("pk", flat=True)[:limit]
    sql, params = select.query.sql_with_params()
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in values]
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {quote(model._meta.pk.column)} IN ({sql}) "
            f"RETURNING {quote(model._meta.pk.column)}",
            [*(f.get_db_prep_save(values[f.name], connection) for f in fields), *params],
        )
        return [row[0] for row in cursor.fetchall()]


def excluding(queryset, handled: set | None):
    """`queryset` without the rows a stage already handled in this tick."""
    return queryset.exclude(pk__in=handled) if handled else queryset
