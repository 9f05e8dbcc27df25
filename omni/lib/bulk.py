"""Bulk writes for hot paths.

Django's bulk_update() builds a CASE WHEN expression per row and field, which costs more
Python time than the database spends on the update. On PostgreSQL one
UPDATE ... FROM unnest(one array per column) per chunk does the same work in a single
statement, prepared once per connection.
insert_rows() writes rows given as plain tuples, for rows nobody reads back in the same
transaction (visits, decisions, audit entries): building a model instance per row costs more
than the COPY that writes it.
insert_from_json() makes the INSERTs of a statement that writes a request's few rows of several
tables at once on PostgreSQL (row_of, row_json): one round trip and no transaction of its own,
where a webhook's statements cost more in round trips than in work.
"""
import json
import weakref
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter

from django.db import connections, router
from django.db.models import DateTimeField, JSONField
from django.utils import timezone

from .sql import prepared_cursor

CHUNK = 1000
# Field types whose Python value psycopg writes as it is: for them the per-value round through
# get_db_prep_save (most of a bulk write's Python time) is skipped. JSON, decimals, UUIDs and
# the like still go through it.
PLAIN_TYPES = frozenset({
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateTimeField", "EmailField",
    "ForeignKey", "IntegerField", "PositiveIntegerField", "PositiveSmallIntegerField", "SlugField",
    "SmallIntegerField", "TextField",
})


def _is_plain(field, *, add: bool) -> bool:
    """Whether an object's attribute for `field` is written as it is (see PLAIN_TYPES)."""
    auto_time = isinstance(field, DateTimeField) and (field.auto_now or (add and field.auto_now_add))
    return field.get_internal_type() in PLAIN_TYPES and not auto_time


def _db_value_getter(field, connection, *, add: bool):
    """A function giving the value to write for `field` of an object: the attribute itself for
    plain types, else what Django would write (pre_save, then get_db_prep_save)."""
    if _is_plain(field, add=add):
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
    quote = connection.ops.quote_name
    # One array per column, whatever the number of rows: the statement's text never changes,
    # so it is prepared once per connection, and psycopg has no placeholder per value to parse.
    arrays = ", ".join([f"%s::{pk.db_type(connection)}[]"]
                       + [f"%s::{array_type(f, connection)}[]" for f in columns])
    assignments = ", ".join(
        f"{quote(f.column)} = v.{quote(f.column)}" + ("::jsonb" if isinstance(f, JSONField) else "")
        for f in columns)
    names = ", ".join(quote(c) for c in ["pk__", *[f.column for f in columns]])
    sql = (f"UPDATE {quote(opts.db_table)} AS t SET {assignments} FROM unnest({arrays}) AS v({names}) "
           f"WHERE t.{quote(pk.column)} = v.{quote('pk__')}")
    values = [_array_value_getter(f, connection) for f in columns]
    with prepared_cursor(connection) as cursor:
        for start in range(0, len(objs), chunk):
            part = objs[start:start + chunk]
            cursor.execute(sql, [array_value([obj.pk for obj in part], pk, connection),
                                 *(array_value([value(obj) for obj in part], field, connection)
                                   for field, value in zip(columns, values))])


INTEGER_COLUMN_TYPES = frozenset({"bigint", "integer", "smallint"})


def array_value(values: list, field, connection):
    """The parameter for `%s::<type>[]` holding `values` of `field`'s column: integers and
    strings as the array's text, which PostgreSQL reads in one go (psycopg writes a list one
    element at a time in Python, for a thousand ids about as long as the query takes); other
    values as the list."""
    if all(type(value) is int for value in values) and field.db_type(connection) in INTEGER_COLUMN_TYPES:
        return "{" + ",".join(map(str, values)) + "}"
    if all(type(value) is str for value in values):
        # An array literal's element in double quotes, its backslashes and quotes escaped.
        return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
                              for value in values) + "}"
    return values


def array_type(field, connection) -> str:
    """The element type of the array a column's values travel in: the column's type without its
    length (casting to varchar(100)[] would cut a longer value to fit, silently, where the
    column itself refuses it and a lookup must not match on its first 100 characters); JSON
    travels as text."""
    if isinstance(field, JSONField):
        return "text"
    db_type = field.db_type(connection)
    return "varchar" if db_type.startswith("varchar(") else db_type


def _array_value_getter(field, connection):
    if isinstance(field, JSONField):
        attname, encoder = field.attname, field.encoder
        return lambda obj: None if getattr(obj, attname) is None else json.dumps(getattr(obj, attname), cls=encoder)
    return _db_value_getter(field, connection, add=False)


def bulk_insert(objs: list, *, chunk: int = 5000, set_ids: bool = False) -> None:
    """Insert objects like bulk_create, but with COPY on PostgreSQL (several times faster: no
    SQL to build, no RETURNING).

    With `set_ids` the objects get their primary keys, as from bulk_create: on PostgreSQL they
    are reserved from the table's sequence in one query and written by the COPY (keys already
    reserved with reserve_ids() are kept).
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
        reserve_ids([obj for obj in objs if obj.pk is None])
        for obj in objs:
            obj._state.adding, obj._state.db = False, connection.alias
        fields = [opts.pk, *fields]
    # The plain columns first, read in one attrgetter call per object (a Python call per value
    # cost most of the COPY's time), then those Django converts, one by one.
    plain = [f for f in fields if _is_plain(f, add=True)]
    converted = [f for f in fields if not _is_plain(f, add=True)]
    fields = plain + converted
    statement = f"COPY {quote(opts.db_table)} ({', '.join(quote(f.column) for f in fields)}) FROM STDIN"
    plain_values = attrgetter(*[f.attname for f in plain]) if len(plain) > 1 else None
    values = [_db_value_getter(f, connection, add=True) for f in (converted if plain_values else fields)]
    # COPY runs on psycopg's own cursor: the wrapper turns its errors into Django's (a unique
    # key taken by a concurrent writer is an IntegrityError callers can catch).
    with connection.cursor() as cursor, connection.wrap_database_errors:
        with cursor.cursor.copy(statement) as copy:
            for obj in objs:
                row = [value(obj) for value in values]
                copy.write_row([*plain_values(obj), *row] if plain_values else row)


class InstanceMaker:
    """Makes many unsaved instances of one model that share most of their values: the shared
    ones worked out once (`common`, given as to the model), each instance then made by position,
    as Django makes a row read from the database. Model(**fields) spends more time matching
    names to fields than the rest of a bulk write spends on the row. A field whose default is
    callable (a dict, the time) gets its own value per instance unless `common` gives it."""

    def __init__(self, model, **common):
        fields = model._meta.concrete_fields
        template = model(**common)
        given = {model._meta.get_field(name).attname for name in common}
        self.model = model
        self.values = [getattr(template, f.attname) for f in fields]
        self.position = {f.attname: index for index, f in enumerate(fields)}
        self.fresh = [(index, f.get_default) for index, f in enumerate(fields)
                      if f.attname not in given and f.has_default() and callable(f.default)]

    def __call__(self, **varying):
        """An instance with the shared values and `varying` (by attribute name: contact_id, not contact)."""
        values = list(self.values)
        for index, default in self.fresh:
            values[index] = default()
        position = self.position
        for name, value in varying.items():
            values[position[name]] = value
        return self.model(*values)


def insert_rows(model, fields: list[str], rows: list[tuple], *, set_ids: bool = False,
                copy: bool = True, json_text: bool = False) -> list | None:
    """Insert `rows`, each a tuple of values for `fields` (attribute names, Python values as the
    model holds them: dicts and lists for JSON), every other column its field's default,
    computed once for the whole call (so never a field whose default differs per row, such as
    a UUID key: pass those). COPY on PostgreSQL, no model instance per row; with copy=False one
    prepared INSERT instead, for the few rows of a request (COPY takes two round trips, the
    statement and then the data).

    With `set_ids` the table's keys are reserved first and returned, one per row, in order.
    With `json_text` the rows' JSON values are given already encoded, as JSON text (for a caller
    that encoded them anyway, to hash them): written as they are.
    """
    if not rows:
        return [] if set_ids else None
    connection = connections[router.db_for_write(model)]
    opts = model._meta
    given = [opts.get_field(name) for name in fields]
    json_positions = [i for i, f in enumerate(given) if isinstance(f, JSONField)]
    if json_text:
        if connection.vendor != "postgresql":  # bulk_create below encodes them itself
            rows = [tuple(json.loads(value) if i in json_positions else value for i, value in enumerate(row))
                    for row in rows]
        json_positions = []
    if connection.vendor != "postgresql":
        objs = [model(**dict(zip(fields, row))) for row in rows]
        model._default_manager.bulk_create(objs, batch_size=CHUNK)
        return [obj.pk for obj in objs] if set_ids else None
    generated = opts.pk.get_internal_type().endswith("AutoField")
    named = {f.attname for f in given}
    template = model()
    defaulted = [f for f in opts.concrete_fields if f.attname not in named and not (f.primary_key and generated)]
    default_values = [_copy_default(f, template, connection) for f in defaulted]
    columns = [f.column for f in given] + [f.column for f in defaulted]
    encoders = {i: given[i].encoder for i in json_positions}
    quote = connection.ops.quote_name
    ids = None
    if set_ids and generated:
        ids = _reserve_ids(model, len(rows), connection)
        columns = [opts.pk.column, *columns]
    def values_of(index, row):
        values = list(row)
        for position in json_positions:
            values[position] = json.dumps(values[position], cls=encoders[position])
        if ids is not None:
            values.insert(0, ids[index])
        return values + default_values

    if not copy:
        json_columns = [False] * (ids is not None) + [isinstance(f, JSONField) for f in [*given, *defaulted]]
        row_sql = "(" + ", ".join("%s::jsonb" if is_json else "%s" for is_json in json_columns) + ")"
        sql = (f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES {', '.join([row_sql] * len(rows))}")
        with prepared_cursor(connection) as cursor, connection.wrap_database_errors:
            cursor.execute(sql, [value for index, row in enumerate(rows) for value in values_of(index, row)])
    else:
        with connection.cursor() as cursor, connection.wrap_database_errors:
            statement = f"COPY {quote(opts.db_table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
            with cursor.cursor.copy(statement) as copier:
                for index, row in enumerate(rows):
                    copier.write_row(values_of(index, row))
    if set_ids and not generated:
        pk_position = fields.index(opts.pk.attname)
        return [row[pk_position] for row in rows]
    return ids


def _copy_default(field, template, connection):
    """A field's default as COPY writes it: JSON as its text (None stays NULL), others as Django would."""
    if isinstance(field, JSONField):
        default = field.get_default()
        return None if default is None else json.dumps(default, cls=field.encoder)
    return field.get_db_prep_save(field.pre_save(template, add=True), connection)


# A new key from a table's sequence (PostgreSQL), given the quoted table name and the key's column.
NEXT_KEY_SQL = "nextval(pg_get_serial_sequence(%s, %s))"


def can_reserve_ids(model) -> bool:
    """Whether reserve_ids() can give the model's unsaved objects their keys before they are
    written: PostgreSQL, from the table's sequence."""
    return connections[router.db_for_write(model)].vendor == "postgresql"


def reserve_ids(objs: list) -> None:
    """Give unsaved objects of one model the keys they will be written with, from the table's
    sequence, in one query (PostgreSQL, can_reserve_ids()); bulk_insert(set_ids=True) keeps them."""
    if not objs:
        return
    model = type(objs[0])
    for obj, pk in zip(objs, _reserve_ids(model, len(objs), connections[router.db_for_write(model)])):
        obj.pk = pk


def _reserve_ids(model, count: int, connection) -> list[int]:
    """`count` new keys from the model's table sequence, in one query (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {NEXT_KEY_SQL} FROM generate_series(1, %s)",
                       [connection.ops.quote_name(model._meta.db_table), model._meta.pk.column, count])
        return [pk for (pk,) in cursor.fetchall()]


def insert_unless_taken(obj) -> bool:
    """INSERT one object unless a unique constraint (a partial one too) already holds a row like
    it: True and the object's primary key set when inserted, False when it was taken.

    One statement (INSERT ... ON CONFLICT DO NOTHING RETURNING), prepared once per connection on
    PostgreSQL, where a savepoint around a plain INSERT would cost two more round trips. A row a
    concurrent transaction inserted first is waited for, and counts as taken once committed.
    """
    model = type(obj)
    connection = connections[router.db_for_write(model)]
    statements = _insert_statements.setdefault(connection, {})
    key_generated_by_database = obj.pk is None
    if (model, key_generated_by_database) not in statements:
        statements[model, key_generated_by_database] = _insert_unless_taken_statement(
            model, connection, key_generated_by_database)
    sql, getters = statements[model, key_generated_by_database]
    with prepared_cursor(connection) as cursor, connection.wrap_database_errors:
        cursor.execute(sql, [value(obj) for value in getters])
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding, obj._state.db = False, connection.alias
    return True


# insert_unless_taken's statements, made once per connection (each thread has its own) and shape.
_insert_statements = weakref.WeakKeyDictionary()


def _insert_unless_taken_statement(model, connection, key_generated_by_database: bool) -> tuple[str, list]:
    """insert_unless_taken's SQL, and the value getter of each of its columns (getters cost more
    to make than to run: a webhook's few inserts spent a third of their time making them)."""
    opts = model._meta
    generated = key_generated_by_database and opts.pk.get_internal_type().endswith("AutoField")
    fields = [f for f in opts.concrete_fields if not (f.primary_key and generated)]
    quote = connection.ops.quote_name
    placeholders = ", ".join(["%s"] * len(fields))
    sql = (f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({placeholders}) ON CONFLICT DO NOTHING RETURNING {quote(opts.pk.column)}")
    return sql, [_db_value_getter(f, connection, add=True) for f in fields]


def filter_in(queryset, column: str, values):
    """queryset.filter(<column>__in=values), with the values as one array on PostgreSQL: binding
    thousands of placeholders one by one costs more than the query. `column` is the model's own
    column name (no lookups across relations).

    The array is a set the planner takes for a few rows (`IN (SELECT unnest(%s))`), so it probes
    the column's index for each value: given `= ANY(array)` it estimates every element against
    the column's statistics and, for a few thousand, may scan the table in parallel instead,
    several times slower (the policy replay's ledger query did)."""
    values = list(values)
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return queryset.filter(**{f"{column}__in": values})
    field = queryset.model._meta.get_field(column)
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    return queryset.extra(
        where=[f"{table}.{connection.ops.quote_name(field.column)} IN (SELECT unnest(%s::{array_type(field, connection)}[]))"],
        params=[array_value(values, field, connection)])


# --- Several rows in one statement ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RowInsert:
    """One row for insert_from_json(): `model`'s `fields` (Field objects) and their values as the
    model holds them (datetimes, dicts and lists for JSON). With `skip_taken` a row a unique
    constraint already holds is skipped, as by insert_unless_taken; without, it fails the whole
    statement."""

    model: type
    fields: tuple
    values: tuple
    skip_taken: bool = False


def row_of(obj, *, skip_taken: bool = False) -> RowInsert:
    """`obj` as one row for insert_from_json(), every concrete column (its key too, when set)."""
    model = type(obj)
    generated = obj.pk is None and model._meta.pk.get_internal_type().endswith("AutoField")
    shape = _row_fields.get((model, generated))
    if shape is None:
        fields = tuple(f for f in model._meta.concrete_fields if not (f.primary_key and generated))
        shape = _row_fields[model, generated] = (fields, tuple(map(_is_auto_time, fields)))
    fields, auto_time = shape
    return RowInsert(model, fields, tuple(
        f.pre_save(obj, add=True) if auto else getattr(obj, f.attname) for f, auto in zip(fields, auto_time)),
        skip_taken)


def row_of_values(model, names: tuple[str, ...], values: tuple) -> RowInsert:
    """A row given as values for the fields `names` (attribute names), every other column its
    field's default, as insert_rows() writes it."""
    shape = _row_fields.get((model, names))
    if shape is None:
        opts = model._meta
        given = tuple(opts.get_field(name) for name in names)
        generated = opts.pk.get_internal_type().endswith("AutoField")
        defaulted = tuple(f for f in opts.concrete_fields if f not in given and not (f.primary_key and generated))
        shape = _row_fields[model, names] = (given + defaulted, tuple(map(_default_of, defaulted)))
    fields, defaults = shape
    now = timezone.now()
    return RowInsert(model, fields, tuple(values) + tuple(
        now if how is _NOW else default() if how is _MADE else default for how, default in defaults))


# How row_of_values() fills a column not given: the row's time, a value made for each row (by
# calling it), or a value written as it is.
_NOW, _MADE, _CONSTANT = "now", "made", "constant"
_IMMUTABLE = (str, int, float, bool, type(None))


def _default_of(field) -> tuple[str, object]:
    """How row_of_values() fills `field`: (_NOW, None) for an auto time, (_CONSTANT, value) for a
    default that cannot change (an immutable constant, or no default: None, or "" where the
    column takes no NULL), else (_MADE, the field's get_default) for one made for each row (a
    callable such as dict, a related object's key)."""
    if _is_auto_time(field):
        return _NOW, None
    if field.is_relation or (field.has_default() and (callable(field.default)
                                                      or not isinstance(field.default, _IMMUTABLE))):
        return _MADE, field.get_default
    value = field.get_default()
    return (_CONSTANT, value) if isinstance(value, _IMMUTABLE) else (_MADE, field.get_default)


def _is_auto_time(field) -> bool:
    return isinstance(field, DateTimeField) and (field.auto_now or field.auto_now_add)


# row_of's and row_of_values' fields and what each writes, per model and shape. Their tuples of
# fields live as long as the process: row_json knows a shape by its tuple's identity.
_row_fields: dict = {}


def insert_from_json(row: RowInsert, connection, *, source: str = "", computed: tuple = (), where: str = "",
                     many: bool = False, on_conflict: str = "") -> str:
    """The INSERT of a row of `row`'s shape given as a JSON object parameter (`many`: a JSON array
    of them), read as `r0`, for one part of a statement of several (a WITH statement): joined
    with the relations `source` names; each (column, SQL expression over those relations and
    r0) of `computed` takes the place of the JSON's value in the row inserted where `where`
    holds. A row without its key takes one from the table's sequence. With skip_taken, ON
    CONFLICT DO NOTHING; `on_conflict`, a clause of the caller's instead. Each row travels as
    one JSON parameter, rows of one table as one array, inserted in their order.

    The SELECT lists the table's columns in the table's own order, so the INSERT need not name
    them (a statement of several stays under 4 kB, the longest psycopg converts once and
    keeps). Each is r0's, or its computed expression: PostgreSQL then reads the JSON once, where
    overlaying the computed values with a second record function (jsonb_populate_record) cost
    a tenth of the webhook statement's time."""
    key = (connection.alias, row.model, row.fields, row.skip_taken, source, computed, where, many, on_conflict)
    if key not in _json_inserts:
        table = connection.ops.quote_name(row.model._meta.db_table)
        values = dict(computed)
        pk = row.model._meta.pk.column
        if pk not in values and pk not in {f.column for f in row.fields}:
            values[pk] = f"nextval('{sequence_of(table, pk, connection)}'::regclass)"
        columns = ", ".join(values.get(column, f"r0.{connection.ops.quote_name(column)}")
                            for column in table_columns(row.model, connection))
        function = "json_populate_recordset" if many else "json_populate_record"
        sources = ", ".join(filter(None, [source, f"{function}(NULL::{table}, %s::json) r0"]))
        condition = f" WHERE {where}" if where else ""
        conflict = f" {on_conflict}" if on_conflict else " ON CONFLICT DO NOTHING" if row.skip_taken else ""
        _json_inserts[key] = f"INSERT INTO {table} SELECT {columns} FROM {sources}{condition}{conflict}"
    return _json_inserts[key]


def table_columns(model, connection) -> list[str]:
    """`model`'s table's columns, in the order the table has them (migrations add columns at
    its end, whatever the model's order)."""
    with connection.cursor() as cursor:
        return [column.name for column in
                connection.introspection.get_table_description(cursor, model._meta.db_table)]


def sequence_of(table: str, column: str, connection) -> str:
    """The name of the sequence that gives `column` of `table` (quoted) its values, as an SQL
    string's text. A statement names it so that PostgreSQL resolves it once, when planning:
    pg_get_serial_sequence() in the statement would search the catalog for every row."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
        return cursor.fetchone()[0].replace("'", "''")


# insert_from_json's statements, per database, row shape and the rest.
_json_inserts: dict = {}


def row_json(row: RowInsert) -> str:
    """The row as insert_from_json() reads it: one JSON object of column names, the text each
    column's type reads, JSON columns as JSON (through their field's encoder, if it has one),
    datetimes in full."""
    shape = _json_shapes.get(id(row.fields))
    if shape is None or shape[0] is not row.fields:
        # (by identity: hashing a tuple of Fields hashes each Field in Python)
        shape = _json_shapes[id(row.fields)] = (
            row.fields, tuple(f.column for f in row.fields),
            tuple((i, f.encoder) for i, f in enumerate(row.fields) if isinstance(f, JSONField) and f.encoder))
    _, columns, encoded = shape
    values = row.values
    if encoded:
        values = list(values)
        for i, encoder in encoded:
            if values[i] is not None and not isinstance(values[i], datetime):
                values[i] = json.loads(json.dumps(values[i], cls=encoder))
    # A column left out reads as NULL (json_populate_record starts from a NULL row): no need to write nulls.
    return json.dumps({column: value for column, value in zip(columns, values) if value is not None},
                      default=_column_text)


def _column_text(value) -> str:
    """A value json.dumps cannot write itself: datetimes in full, dates, decimals and UUIDs as their text."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


# row_json's column names and the JSON fields with an encoder, per row shape (its tuple of fields).
_json_shapes: dict = {}
