"""Endpoints for load balancers: /healthz (the process answers) and /readyz (it can work)."""
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import broker_problem, database_problem


@never_cache
@require_GET
def healthz(request):
    """Alive: answers without touching the database or the broker, so it stays cheap."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    """Ready: the database answers and the Celery broker accepts connections; 503 names what is down."""
    checks = {"database": database_problem(), "broker": broker_problem()}
    ready = not any(checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", **{name: problem or "ok" for name, problem in
                                                                        checks.items()}},
                        status=200 if ready else 503)
