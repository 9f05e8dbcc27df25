"""Settings tables read on hot paths, kept per process and read again when they change.

A TableCache holds what `load()` builds from a few small tables (keyword lists, service
levels). A use asks the database, in one query, for each table's row count, highest id and
latest `updated_at`: a save anywhere (the tables' `updated_at` is auto_now), an insert or a
delete moves that key, and the next use loads again. It asks at most once every
`recheck_seconds` (a setting's name or a number): a change made in another process shows
within that time. A change made with queryset.update() that leaves updated_at alone goes
unnoticed. In the process that saves or deletes, the signals empty the cache at once (a
test's rolled-back rows can leave the same key behind).
"""
import time

from django.conf import settings
from django.db import connections, router
from django.db.models.signals import post_delete, post_save

from .sql import prepared_cursor


class TableCache:
    def __init__(self, load, *models, recheck_seconds: str | float = 0):
        self.load = load
        self.models = models
        self.recheck_seconds = recheck_seconds
        self.key = None
        self.value = None
        self.checked_at = None
        for model in models:
            post_save.connect(self._changed, sender=model, weak=False)
            post_delete.connect(self._changed, sender=model, weak=False)

    def _changed(self, **kwargs) -> None:
        self.clear()

    def get(self):
        """What load() built, loaded again if a table changed since."""
        now = time.monotonic()
        if self.key is not None and self.checked_at is not None and now - self.checked_at < self._recheck():
            return self.value
        key = self.version()
        if key != self.key:
            self.value = self.load()
            self.key = key
        self.checked_at = now
        return self.value

    def _recheck(self) -> float:
        if isinstance(self.recheck_seconds, str):
            return float(getattr(settings, self.recheck_seconds))
        return self.recheck_seconds

    def version(self) -> tuple:
        connection = connections[router.db_for_read(self.models[0])]
        quote = connection.ops.quote_name
        sql = " UNION ALL ".join(
            f"SELECT {position}, COUNT(*), MAX({quote(model._meta.pk.column)}), MAX({quote('updated_at')}) "
            f"FROM {quote(model._meta.db_table)}"
            for position, model in enumerate(self.models)
        )
        with prepared_cursor(connection) as cursor:
            cursor.execute(f"{sql} ORDER BY 1")
            return tuple(map(tuple, cursor.fetchall()))

    def clear(self) -> None:
        self.key = self.value = self.checked_at = None
