"""What the HTTP benchmarks share: Omni served by gunicorn (two sync workers) on 127.0.0.1, a
load run from a second process (omni.bench.load), /healthz under the same load as the ceiling,
and the figures that compare an endpoint with it.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager

from django.conf import settings

from . import Figure
from .database import database_url

WORKERS = 2


@contextmanager
def web_server(log, env: dict | None = None):
    """gunicorn serving Omni on a free port of 127.0.0.1 against the benchmark database; its base
    URL. `env` adds to (or overrides) the server's environment."""
    from django.db import connection

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "false", "OMNI_ENV": "development",
           "ALLOWED_HOSTS": "127.0.0.1", "CELERY_BROKER_URL": "memory://", **(env or {})}
    command = [sys.executable, "-m", "gunicorn", "omni.wsgi:application", "--workers", str(WORKERS),
               "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    # SQLite: let the server's workers take the write lock while this process is idle.
    connection.close()
    with tempfile.TemporaryFile("w+") as output:
        server = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(base, server, output)
            log(f"gunicorn ({WORKERS} sync workers) on {base}")
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_until_up(base: str, server, output) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output.seek(0)
            raise RuntimeError(f"gunicorn stopped at start:\n{output.read()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz within 30 seconds")


def run_load(mode: str, url: str, **options) -> dict:
    """Run omni.bench.load in a second process; its result."""
    arguments = [sys.executable, "-m", "omni.bench.load", mode, url]
    for name, value in options.items():
        arguments += [f"--{name.replace('_', '-')}", str(value)]
    out = subprocess.run(arguments, cwd=settings.BASE_DIR, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def healthz_ceiling(base: str, seconds: int) -> dict:
    """GET /healthz (no database) under the load every endpoint gets, after a one-second warm-up."""
    run_load("single", f"{base}/healthz", seconds=1)
    return run_load("single", f"{base}/healthz", seconds=seconds)


def rate(result: dict) -> float:
    return result["requests"] / result["seconds"]


def compared_with_healthz(bench: str, name: str, ceiling: dict, result: dict, *, seconds: int, what: str,
                          check: str) -> list[Figure]:
    """/healthz's figures, the endpoint's (`name`_requests_per_s, _p50_ms, _p99_ms, _non_2xx) and
    ratio_to_healthz, the endpoint's rate as a fraction of /healthz's in the same run."""
    return [
        Figure(bench, "healthz_requests_per_s", rate(ceiling), "req/s", ceiling["requests"], subject="peer",
               notes=f"GET /healthz, gunicorn {WORKERS} sync workers, {ceiling['client']}, {seconds}s"),
        Figure(bench, "healthz_p50_ms", ceiling["p50_ms"], "ms", ceiling["requests"], subject="peer"),
        Figure(bench, "healthz_p99_ms", ceiling["p99_ms"], "ms", ceiling["requests"], subject="peer"),
        Figure(bench, f"{name}_requests_per_s", rate(result), "req/s", result["requests"],
               notes=f"{what}, same load; {check}"),
        Figure(bench, f"{name}_p50_ms", result["p50_ms"], "ms", result["requests"]),
        Figure(bench, f"{name}_p99_ms", result["p99_ms"], "ms", result["requests"]),
        Figure(bench, "ratio_to_healthz", rate(result) / rate(ceiling), "ratio", result["requests"],
               notes=f"{rate(result):.0f} / {rate(ceiling):.0f} req/s"),
        Figure(bench, f"{name}_non_2xx", result["non_2xx"] + result["errors"], "requests", result["requests"]),
    ]
