"""The benchmarks' own database: created empty and migrated, never the configured one's data.

On PostgreSQL it is bench_<configured name> (not test_<name>, which a test run of the same
DATABASE_URL uses); on SQLite a file under VAR_DIR, so the web server a benchmark starts can
open it too.
"""
from contextlib import contextmanager

from django.conf import settings
from django.db import connection


@contextmanager
def bench_database(keep: bool = False):
    """Create and migrate the benchmark database, switch the default connection to it, and
    drop it afterwards unless `keep`."""
    old_name = connection.settings_dict["NAME"]
    test_settings = connection.settings_dict.setdefault("TEST", {})
    if connection.vendor == "sqlite":
        test_settings["NAME"] = str(settings.VAR_DIR / "bench.sqlite3")
    else:
        test_settings["NAME"] = f"bench_{old_name}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False, serialize=False)
    try:
        yield connection.settings_dict["NAME"]
    finally:
        if not keep:
            connection.creation.destroy_test_db(old_name, verbosity=0)


def database_url() -> str:
    """DATABASE_URL of the database the default connection uses now (for a server we start)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def psycopg_conninfo() -> str:
    """A libpq connection string for the database the default connection uses now."""
    from psycopg.conninfo import make_conninfo

    db = connection.settings_dict
    options = {"dbname": db["NAME"], "user": db["USER"], "password": db.get("PASSWORD") or None,
               "host": db["HOST"] or None, "port": db["PORT"] or None}
    return make_conninfo(**{key: value for key, value in options.items() if value})
