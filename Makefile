# The two commands of the README: `make dev` runs the platform locally, `make test` runs the
# tests. Both install what they need into .venv first (once; again when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint typecheck unit integration voice e2e bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[voice,speech,local,dev]'
	touch $(STAMP)

# Options of `talkturo dev` go through ARGS: make dev ARGS="--fresh --port 9000"
ARGS ?=

dev: $(STAMP)  ## run the whole platform locally (Ctrl-C stops it)
	$(BIN)/talkturo dev $(ARGS)

test: lint typecheck  ## lint, type-check, then every test suite
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/core/talkturo functions

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

voice: $(STAMP)  ## provider adapters against their fakes, and conversations through the simulator
	$(BIN)/pytest tests/providers tests/voice

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

bench: $(STAMP)  ## print the figures: API cold start, DynamoDB calls per request, platform at size, voice service, campaigns, event delivery, extraction on the golden set, hang-up to call.analyzed, Stripe webhook to credits, auto-reload, offline speech, spoken emails
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .aws-sam
