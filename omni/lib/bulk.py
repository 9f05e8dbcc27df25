"""Bulk writes for hot paths.

Django's bulk_update() builds a CASE WHEN expression per row and field, which costs more
Python time than the database spends on the update. On PostgreSQL one
UPDATE ... FROM (VALUES ...) per chunk does the same work in a single cheap statement.
"""
from django.db import connections, router
from django.db.models import DateTimeField

CHUNK = 1000
# Field types whose Python value psycopg writes as it is: for them the per-value round through
# get_db_prep_save (most of a bulk write's Python time) is skipped. JSON, decimals, UUIDs and
# the like still go through it.
PLAIN_TYPES = frozenset({
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateTimeField", "EmailField",
    "ForeignKey", "IntegerField", "PositiveIntegerField", "PositiveSmallIntegerField", "SlugField",
    "SmallIntegerField", "TextField",
})


def _db_value_getter(field, connection, *, add: bool):
    """A function giving the value to write for `field` of an object: the attribute itself for
    plain types, else what Django would write (pre_save, then get_db_prep_save)."""
    auto_time = isinstance(field, DateTimeField) and (field.auto_now or (add and field.auto_now_add))
    if field.get_internal_type() in PLAIN_TYPES and not auto_time:
        attname = field.attname
        return lambda obj: getattr(obj, attname)
    if add:
        return lambda obj: field.get_db_prep_save(field.pre_save(obj, add=True), connection)
    return lambda obj: field.get_db_prep_save(getattr(obj, field.attname), connection)


def bulk_update(objs: list, fields: list[str], *, chunk: int = CHUNK) -> None:
    """Write `fields` of every object in objs, like QuerySet.bulk_update but fast on PostgreSQL."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(objs, fields, batch_size=chunk)
        return
    opts = model._meta
    pk = opts.pk
    columns = [opts.get_field(name) for name in fields]
    casts = [f"%s::{pk.db_type(connection)}"] + [f"%s::{f.db_type(connection)}" for f in columns]
    row_sql = "(" + ", ".join(casts) + ")"
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns)
    names = ", ".join(quote(c) for c in ["pk__", *[f.column for f in columns]])
    values = [_db_value_getter(f, connection, add=False) for f in columns]
    with connection.cursor() as cursor:
        for start in range(0, len(objs), chunk):
            part = objs[start:start + chunk]
            params = []
            for obj in part:
                params.append(obj.pk)
                params.extend(value(obj) for value in values)
            cursor.execute(
                f"UPDATE {quote(opts.db_table)} AS t SET {assignments} "
                f"FROM (VALUES {', '.join([row_sql] * len(part))}) AS v({names}) "
                f"WHERE t.{quote(pk.column)} = v.{quote('pk__')}",
                params,
            )


def bulk_insert(objs: list, *, chunk: int = 5000, set_ids: bool = False) -> None:
    """Insert objects like bulk_create, but with COPY on PostgreSQL (several times faster: no
    SQL to build, no RETURNING).

    With `set_ids` the objects get their primary keys, as from bulk_create: on PostgreSQL they
    are reserved from the table's sequence in one query and written by the COPY.
    """
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs, batch_size=chunk)
        return
    opts = model._meta
    # Database-generated keys are left out unless reserved here; keys made in Python (UUIDs) are written.
    generated = opts.pk.get_internal_type().endswith("AutoField")
    fields = [f for f in opts.concrete_fields if not (f.primary_key and generated)]
    quote = connection.ops.quote_name
    if set_ids and generated:
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                           [quote(opts.db_table), opts.pk.column, len(objs)])
            for obj, (pk,) in zip(objs, cursor.fetchall()):
                obj.pk = pk
                obj._state.adding, obj._state.db = False, connection.alias
        fields = [opts.pk, *fields]
    statement = f"COPY {quote(opts.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    values = [_db_value_getter(f, connection, add=True) for f in fields]
    with connection.cursor() as cursor:
        with cursor.cursor.copy(statement) as copy:
            for obj in objs:
                copy.write_row([value(obj) for value in values])
