# Two commands for a newcomer: `make run` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed
# Development mode: the published development secrets and token key are accepted (never elsewhere).
export APP_ENV ?= development

.PHONY: run test test-pgbouncer faults soak screenshots install migrate lint typecheck unit integration bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/adsapp db upgrade

## run: install, create and migrate the database, then start web + workers + scheduler (Ctrl-C stops all);
## in development (the default) also the fake Graph API, a demo tenant and the curls to try it
RUN_PROCFILE := $(if $(filter development,$(APP_ENV)),Procfile.dev,Procfile)
run: migrate
	@if [ "$(APP_ENV)" = development ]; then $(BIN)/adsapp dev-setup --base-url http://localhost:$(PORT); fi
	APP_ENV=$(APP_ENV) PORT=$(PORT) FAKE_GRAPH_WEBHOOK_URL=http://127.0.0.1:$(PORT)/webhooks/whatsapp \
	  $(BIN)/honcho start --port $(PORT) -f $(RUN_PROCFILE)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy --strict config domain db services ingress workers

## test: lint, type-check and the whole suite against the real Postgres, RabbitMQ and Redis
test: lint typecheck
	$(BIN)/pytest -q

## test-pgbouncer: the integration and e2e suites through PgBouncer in transaction mode, prepares off
test-pgbouncer: install
	bash tests/pgbouncer.sh

## faults: the fault-injection suite (private Postgres, RabbitMQ, Redis; about 10 minutes)
faults: install
	$(BIN)/pytest -q -s -m faults tests/faults

## soak: the whole fleet under mixed traffic for 10 minutes (MINUTES=2 for a short one); prints JSON
soak: install
	$(BIN)/python -m bench.soak --minutes $(or $(MINUTES),10)

## screenshots: the console's browser tests, saving the screenshots README shows into docs/
screenshots: install
	CONSOLE_SCREENSHOTS_DIR=docs $(BIN)/pytest -q tests/integration/console -k browser

unit: install
	$(BIN)/pytest -q tests/unit

## bench: the benchmarks (ingress needs wrk: apt-get install wrk); each prints JSON
bench: install
	$(BIN)/python -m bench.ingress
	$(BIN)/python -m bench.inbound
	$(BIN)/python -m bench.outbound
	$(BIN)/python -m bench.outbound --backlog
	$(BIN)/python -m bench.inbound_cpu
	$(BIN)/python -m bench.outbound_cpu
	$(BIN)/python -m bench.dlq
	$(BIN)/python -m bench.bulk

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
