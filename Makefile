# kithost — the two commands of the README:
#   make demo   a real agent session with the bundled extensions, offline
#   make test   lint (ruff), types (mypy), then the whole test suite
# (make test-unit runs only the process-free unit layer, in seconds.)
# Both create .venv in the repo and install the pinned dependencies first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# npm ci writes this file: the JavaScript SDK's packages (zeromq ships its binary; no install scripts needed).
JS_STAMP := ext_sdk/js/node_modules/.package-lock.json

# litellm must never reach the network: local cost map, no Hugging Face lookups.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS := True
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-unit lint bench bench-quick clean venv schema docs sandbox-deps

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	@echo "== setting up $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kithost demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint sandbox-deps $(JS_STAMP)
	$(BIN)/python -m pytest -q

$(JS_STAMP): ext_sdk/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm (Node 20) not found: the JavaScript SDK needs it"; exit 1; }
	npm ci --prefix ext_sdk/js --ignore-scripts --no-audit --no-fund --loglevel=error

# The strong sandbox level needs bubblewrap, which a fresh Debian machine lacks. As root with apt-get, install
# it (only when missing; a failure only warns: the sandbox then runs, and the tests run, at a weaker level).
sandbox-deps:
	@if ! command -v bwrap >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "== installing bubblewrap (Debian package) for the strong sandbox level"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 \
	      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
	      || echo "warning: could not install bubblewrap: tests run at the level this machine gives"; \
	  else \
	    echo "note: bubblewrap is not installed (not root, or no apt-get): tests run at the level this machine gives"; \
	  fi; \
	fi

# The fast layer alone (no processes; seconds): for your own edit-test loop.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

bench: $(STAMP)
	$(BIN)/python bench/run.py

# A smoke run of every benchmark (~45 s); the figures are noisier than `make bench`'s.
bench-quick: $(STAMP)
	$(BIN)/python bench/run.py --quick

schema: $(STAMP)
	$(BIN)/kithost schema --write docs/protocol.schema.json
	$(BIN)/kithost schema --write ext_sdk/js/protocol.schema.json

docs: $(STAMP)
	$(BIN)/python -m host.config_doc --write docs/configuration.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
