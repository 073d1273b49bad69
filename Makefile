# Faultline: `make run` starts everything; `make test` runs the whole suite.
# Both install what they need into .venv first (again only when pyproject.toml changes).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench footprint systemd chaos check-python clean

run: $(VENV)/.installed
	@exec $(BIN)/python -m config.run

# The suite in two halves side by side (tests/conftest.py says how it is split); PYTEST_ARGS=-n0 runs it in one.
test: $(VENV)/.installed-test
	@tests/system_tools.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Benchmarks print ratios measured in one run; they are not tests and never fail on speed.
bench: $(VENV)/.installed-test
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# The idle stack's memory as `make run` starts it: each process's proportional set size and the total (bench/footprint.py).
footprint: $(VENV)/.installed-test
	$(BIN)/python bench/footprint.py

# systemd units from the Procfile (deploy/systemd.py). The defaults are the README's Debian layout;
# on a server: make systemd FAULTLINE_HOME=$$PWD SYSTEMD_DIR=/etc/systemd/system
FAULTLINE_HOME ?= /srv/faultline
FAULTLINE_VENV ?= $(FAULTLINE_HOME)/.venv
FAULTLINE_USER ?= faultline
FAULTLINE_ENV_FILE ?= /etc/faultline/faultline.env
SYSTEMD_DIR ?= deploy/systemd
systemd: check-python
	$(PYTHON) deploy/systemd.py --home $(FAULTLINE_HOME) --venv $(FAULTLINE_VENV) --user $(FAULTLINE_USER) \
		--env-file $(FAULTLINE_ENV_FILE) --out $(SYSTEMD_DIR)

# The long chaos run (tests/chaos.py): INTENTS over SECONDS_OF_CHAOS of phased faults while worker children,
# the worker, the relay and Redis are killed; prints the audit next to the harness's own count and fails
# if anything is lost, sent twice or left unfinished. On SQLite; CHAOS_POSTGRES_URL=postgres://… runs it on a fresh
# PostgreSQL database on that server (dropped after).
chaos: $(VENV)/.installed-test
	$(BIN)/python -m tests.chaos --intents $${INTENTS:-20000} --seconds $${SECONDS_OF_CHAOS:-120} --settle $${SETTLE_SECONDS:-210}

check-python:
	@test -n "$(PYTHON)" || { echo "make: Python 3.11 or newer is needed (python3.11 or python3 on PATH)."; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
		{ echo "make: $(PYTHON) is `$(PYTHON) --version`; Faultline needs Python 3.11 or newer."; exit 1; }

$(VENV)/bin/python: | check-python
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) .run staticfiles
