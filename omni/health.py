"""Is this process ready to serve? The checks behind /readyz, each cheap and bounded in time.

Each check answers "" when its component works, else "unreachable"; why is logged, never
answered, because /readyz is open to anyone (exception text can hold hosts and credentials).
"""
import logging

from django.conf import settings
from django.db import connection
from kombu import Connection

log = logging.getLogger(__name__)

UNREACHABLE = "unreachable"


def database_problem() -> str:
    """"" when the default database answers SELECT 1, else "unreachable"."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure means "not ready"
        log.warning("readyz: the database is unreachable: %s: %s", type(exc).__name__, exc)
        return UNREACHABLE
    return ""


def broker_problem() -> str:
    """"" when the Celery broker accepts a connection within OMNI_READYZ_BROKER_TIMEOUT, else "unreachable"."""
    timeout = settings.OMNI_READYZ_BROKER_TIMEOUT
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout,
                        transport_options={**options, "socket_connect_timeout": timeout}) as broker:
            # One attempt, no retry loop: a load balancer asks again soon anyway.
            broker.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:
        log.warning("readyz: the broker is unreachable: %s: %s", type(exc).__name__, exc)
        return UNREACHABLE
    return ""
