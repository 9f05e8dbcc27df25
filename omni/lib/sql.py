"""Raw SQL helpers for hot paths."""
import hashlib
from contextlib import contextmanager

from django.db import connection as default_connection
from django.db.backends.utils import CursorDebugWrapper


@contextmanager
def prepared_cursor(connection=default_connection):
    """A cursor whose statements PostgreSQL parses and plans once per connection, not per call.

    Django's psycopg cursors bind parameters on the client, so the server parses and plans
    every statement anew; for a one-row insert that is a third of its cost. This cursor binds
    on the server, and psycopg prepares a statement once it has run `prepare_threshold` times
    on the connection (DATABASES OPTIONS; see settings). Keep the SQL text constant (pass
    lists as arrays, not a VALUES row per item) or every shape is prepared anew. Queries still
    go through Django's cursor wrapper: they are logged and counted like any other. On other
    databases it is an ordinary cursor.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            yield cursor
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    raw = ServerBindingCursor(connection.connection)
    wrapped = _StatementLoggingCursor(raw, connection) if connection.queries_logged else connection.make_cursor(raw)
    with wrapped as cursor:
        yield cursor


class _StatementLoggingCursor(CursorDebugWrapper):
    """Logs the statement as written (with %s): psycopg keeps no text of a prepared statement it
    runs, so Django's query log would hold None for it."""

    @contextmanager
    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        with super().debug_sql(sql, params, use_last_executed_query=False, many=many):
            yield


class QueryTemplate:
    """A queryset built and compiled to SQL once per process and database, then run with other
    values: for a hot path whose query has the same shape every time, where building and
    compiling it (Django's expressions, subqueries) costs more than running it.

    `build(**placeholders)` returns the queryset (use values_list: rows come back as tuples);
    each keyword it takes is given a unique marker string, and wherever that marker lands among
    the compiled query's parameters, run() puts the value given under that name. So the names
    may only stand for values compared as text (addresses, channel names), never turned into
    something else first. Statements go through prepared_cursor.

    On PostgreSQL the query's other parameters, constants of its shape (statuses, flags), are
    written into the SQL as literals. A prepared statement is planned for its parameters each
    time until a generic plan looks as cheap, and a generic plan cannot use a partial index
    (`WHERE status <> 'closed'`) whose condition hangs on a parameter: with the constants
    written in, the generic plan is the good one and planning stops after the first runs.
    """

    def __init__(self, build, *names: str):
        self.build = build
        self.names = names
        self.compiled: dict[str, tuple[str, list]] = {}

    def _compile(self, connection) -> tuple[str, list]:
        if connection.alias not in self.compiled:
            markers = {name: f"\x1equery-template:{name}\x1e" for name in self.names}
            queryset = self.build(**markers)
            sql, params = queryset.query.get_compiler(connection=connection).as_sql()
            by_marker = {marker: name for name, marker in markers.items()}
            slots = [by_marker.get(param) if isinstance(param, str) else None for param in params]
            missing = set(self.names) - set(slots)
            if missing:
                raise ValueError(f"These values never reach the query's parameters: {', '.join(sorted(missing))}.")
            slotted = list(zip(slots, params))
            if connection.vendor == "postgresql":
                sql, slotted = _constants_written_in(sql, slotted, connection)
            self.compiled[connection.alias] = (sql, slotted)
        return self.compiled[connection.alias]

    def statement(self, connection=default_connection, **values) -> tuple[str, list]:
        """The SQL (with %s placeholders) and its parameters for `values`."""
        sql, slots = self._compile(connection)
        return sql, [values[slot] if slot is not None else param for slot, param in slots]

    def rows(self, connection=default_connection, **values) -> list[tuple]:
        sql, params = self.statement(connection, **values)
        with prepared_cursor(connection) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()


def _constants_written_in(sql: str, slotted: list, connection) -> tuple[str, list]:
    """The query with its unnamed parameters as SQL literals, and the named slots left."""
    from psycopg import sql as psycopg_sql

    connection.ensure_connection()
    pieces = sql.split("%s")
    if len(pieces) != len(slotted) + 1:
        raise ValueError("The query's placeholders do not match its parameters.")
    written, kept = [pieces[0]], []
    for (slot, param), piece in zip(slotted, pieces[1:]):
        if slot is None:
            # Choices (str enums) as their plain value; psycopg would otherwise dump an Enum's name.
            value = str(param) if isinstance(param, str) else param
            written.append(psycopg_sql.Literal(value).as_string(connection.connection).replace("%", "%%"))
        else:
            written.append("%s")
            kept.append((slot, param))
        written.append(piece)
    return "".join(written), kept


def lock_until_commit(name: str, connection=default_connection) -> None:
    """Wait for, then hold until the transaction ends, a lock on `name` (PostgreSQL's advisory
    lock on a 64-bit digest of it): two transactions that would both create the thing it names
    run one after the other. Call inside a transaction. SQLite runs one writer at a time anyway."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
