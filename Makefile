# Omni: `make run` starts the embedded default with demo data; `make test` runs the test suite.
# Both create the virtualenv in .venv and install requirements.txt when it changed.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install

run: $(STAMP)
	bash scripts/run.sh

# Extra pytest arguments go in ARGS, e.g. make test ARGS="-k audit -x".
test: $(STAMP)
	$(VENV)/bin/pytest $(ARGS)

install: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when requirements.txt is newer than the stamp, so reruns start at once.
$(STAMP): requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)
