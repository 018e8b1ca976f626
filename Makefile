# kithost — the commands of the README:
#   make        .venv with the pinned dependencies, and the JavaScript SDK's packages where npm is installed
#   make demo   the same, then a real agent session with the bundled extensions, offline
#   make test   lint (ruff), types (mypy), then the whole test suite (needs npm: the JavaScript SDK is tested too)
# (make test-unit runs only the process-free unit layer, in seconds.)
# Each creates .venv in the repo and installs the pinned dependencies first; each step runs only when needed.

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

.PHONY: all demo test test-unit lint bench bench-quick clean venv js-sdk schema docs sandbox-deps

all: venv js-sdk

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	@echo "== setting up $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP) js-sdk
	$(BIN)/kithost demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint sandbox-deps $(JS_STAMP)
	$(BIN)/python -m pytest -q

# Exactly the lock file's packages; from npm's cache when they are there (offline), else from the registry.
$(JS_STAMP): ext_sdk/js/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm (Node 20) not found: the JavaScript SDK needs it"; exit 1; }
	@echo "== installing the JavaScript SDK's packages (ext_sdk/js, npm ci from its lock file)"
	npm ci --prefix ext_sdk/js --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error

# The JavaScript SDK for `make` and `make demo`: installed when npm is here; otherwise one warning (only JavaScript
# extensions need it, and their tests are skipped), and the same when npm ci fails (say, offline with an empty cache).
js-sdk:
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "warning: npm (Node 20) not found: the JavaScript SDK (ext_sdk/js) is not installed; JavaScript extensions need it"; \
	elif ! $(MAKE) --no-print-directory --silent $(JS_STAMP); then \
	  echo "warning: the JavaScript SDK (ext_sdk/js) is not installed: npm ci failed (see above); run make again to retry"; \
	fi

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
