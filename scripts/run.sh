#!/usr/bin/env bash
# `make run`: migrate, load the demo data, then run the web server and one Celery worker with
# beat inside it (the embedded default) until Ctrl-C, which stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
HOST=127.0.0.1
PORT=8000

if "$PY" -c "import socket, sys; sys.exit(socket.socket().connect_ex(('$HOST', $PORT)) != 0)"; then
  echo "Port $PORT on $HOST is already in use: is Omni already running? Stop it first (Ctrl-C in its terminal)." >&2
  exit 1
fi

"$PY" manage.py migrate --noinput
"$PY" manage.py seed_demo
QUEUES=$("$PY" -c "from omni.choices import ALL_QUEUES; print(','.join(ALL_QUEUES))")

WEB_PID=""
WORKER_PID=""
STOPPED=""

# True once pid has exited, waiting up to $2 seconds for it.
gone_within() {
  local pid=$1 tries=$(( $2 * 2 ))
  while [ "$tries" -gt 0 ]; do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
    tries=$(( tries - 1 ))
  done
  ! kill -0 "$pid" 2>/dev/null
}

stop() {
  [ -n "$STOPPED" ] && return
  STOPPED=1
  echo
  echo "Stopping Omni..."
  if [ -n "$WEB_PID" ]; then
    kill -TERM "$WEB_PID" 2>/dev/null || true
  fi
  if [ -n "$WORKER_PID" ]; then
    # SIGTERM to Celery's main process only: it finishes the tasks in hand (warm shutdown)
    # and stops its pool and beat itself. Signalling its whole process group can hang it.
    kill -TERM "$WORKER_PID" 2>/dev/null || true
    if ! gone_within "$WORKER_PID" 20; then
      echo "The worker is still busy after 20 s: cold shutdown."
      kill -QUIT "$WORKER_PID" 2>/dev/null || true
      gone_within "$WORKER_PID" 10 || kill -KILL "$WORKER_PID" 2>/dev/null || true
    fi
  fi
  if [ -n "$WEB_PID" ]; then
    gone_within "$WEB_PID" 10 || kill -KILL "$WEB_PID" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  echo "Omni stopped."
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# Each server runs in a process group of its own (job control), so a Ctrl-C in this terminal
# reaches only this script, which then stops them in order.
set -m
"$PY" manage.py runserver "$HOST:$PORT" &
WEB_PID=$!
.venv/bin/celery -A omni worker -B --scheduler django_celery_beat.schedulers:DatabaseScheduler \
  -Q "$QUEUES" --concurrency 2 --loglevel INFO &
WORKER_PID=$!
set +m

echo
echo "Omni is starting: admin at http://$HOST:$PORT/admin/ (logins above)."
echo "Watch the sandbox outbox at http://$HOST:$PORT/admin/channels/outboxmessage/ — Ctrl-C stops everything."
echo

# Runs until Ctrl-C, or until one of the two stops on its own (then the other is stopped too).
status=0
wait -n "$WEB_PID" "$WORKER_PID" || status=$?
echo "A server process exited (status $status); stopping the other." >&2
stop
exit 1
