# Omni: `make run` starts the embedded default with demo data; `make test` runs the test suite.
# Both create the virtualenv in .venv; `run` installs requirements.txt (the runtime set), `test`
# also requirements-dev.txt (pytest, pytest-xdist, moto, Playwright, hypothesis), each again only when it changed.

PYTHON ?= python3
VENV := .venv
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(VENV)/bin/python -m pip install --disable-pip-version-check --progress-bar off

.PHONY: run test install install-dev reset

run: $(RUNTIME_STAMP)
	bash scripts/run.sh

# Extra pytest arguments go in ARGS, e.g. make test ARGS="-k audit -x". The suite runs in one
# process per core (pytest-xdist; each has its own test database); TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= auto
test: $(DEV_STAMP)
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

$(VENV)/bin/python:
	@echo "== Creating the virtualenv in $(VENV) (Python: $$($(PYTHON) --version 2>&1))"
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when a requirements file is newer than its stamp, so reruns start at once.
$(RUNTIME_STAMP): requirements.txt | $(VENV)/bin/python
	@echo "== Installing Omni's runtime packages into $(VENV) (requirements.txt; about a minute the first time)"
	@$(PIP) --quiet -r requirements.txt
	@touch $(RUNTIME_STAMP)
	@echo "== Packages installed"

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	@echo "== Installing Omni's runtime and test packages into $(VENV) (requirements-dev.txt; about a minute the first time)"
	@$(PIP) --quiet -r requirements-dev.txt
	@touch $(DEV_STAMP) $(RUNTIME_STAMP)
	@echo "== Packages installed"

# Starts the embedded demo afresh: deletes the SQLite database, the filesystem broker's folder
# the demo logins and the audit checkpoints under var/ (stop `make run` first; a DATABASE_URL database is untouched).
reset:
	@if [ -n "$$DATABASE_URL" ]; then echo "DATABASE_URL is set: make reset only clears the embedded SQLite demo." >&2; exit 1; fi
	rm -rf var/omni.sqlite3 var/omni.sqlite3-wal var/omni.sqlite3-shm var/celery var/demo-logins.json var/audit-checkpoints
	@echo "== The demo is reset: the next make run loads it again, with new logins."
