"""Raw SQL helpers for hot paths."""
from contextlib import contextmanager

from django.db import connection as default_connection


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
    wrapped = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    with wrapped as cursor:
        yield cursor
