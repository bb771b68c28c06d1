# tenantkit: `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# pytest-xdist workers for `make test`, each with its own servers (1 = one process). Three
# on two cores: much of the suite waits on processes and timeouts rather than computing.
TEST_WORKERS ?= 3

.DEFAULT_GOAL := help
# fuzz: schemathesis on the gateway's merged OpenAPI, 300 cases per operation (>= 1,000 per API).
.PHONY: help install run test test-observe test-deep fuzz lint migrate psql up up-placements down logs test-compose test-citus load load-noisy load-attacks load-lifecycle load-move bench

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{gsub(/\$$\$$/, "$$", $$2); printf "  %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@test -n "$(PYTHON)" || { echo "tenantkit needs Python 3.11 or newer on PATH (python3.11, python3.12, python3.13 or python3)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## Create .venv and install tenantkit with its dev tools

run: $(INSTALLED) ## Run the whole stack natively (PostgreSQL, Redis, migrations, users, gateway)
	$(PY) -m kit.run

test: $(INSTALLED) ## Run the whole suite against real PostgreSQL and Redis it starts itself
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

test-observe: $(INSTALLED) ## The dashboard's queries against Debian's prometheus (apt-get install prometheus)
	$(PY) -m pytest tests_observe

test-deep: $(INSTALLED) ## Nightly-sized: the stateful isolation test with 200 examples (~30 min)
	ISOLATION_EXAMPLES=200 $(PY) -m pytest tests/e2e/test_isolation_stateful.py

fuzz: $(INSTALLED) ## Schemathesis on the gateway's /openapi.json, each API with its credential, big budget
	FUZZ_MAX_EXAMPLES=300 $(PY) -m pytest tests/e2e/test_fuzz.py -p no:cacheprovider --timeout 3000

lint: $(INSTALLED) ## ruff, mypy, bandit (high severity fails) and pip-audit (a known vulnerability fails)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy gateway services kit migrations bench loadtests
	$(VENV)/bin/bandit --quiet --recursive --severity-level high gateway services kit migrations bench loadtests
	@# The installed environment against PyPI's advisory data (needs PyPI; tenantkit itself is skipped).
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

migrate: $(INSTALLED) ## Apply the Alembic migrations to $$DATABASE_URL
	$(PY) -m migrations

psql: $(INSTALLED) ## Open psql on the database of the running `make run` stack
	$(PY) -m kit.psql

# `make up-placements` layers docker-compose.placements.yml (a second PostgreSQL) on top.
COMPOSE := docker compose

up: ## Build and start the stack under docker compose (gateway on localhost:8000)
	@sh deploy/compose-env.sh .env
	$(COMPOSE) up -d --build --wait
	@port=$$($(COMPOSE) port gateway 8000 | sed 's/.*://'); \
	admin=$$($(COMPOSE) port gateway 9000 | sed 's/.*://'); \
	echo "tenantkit is up: http://localhost:$$port  (admin API and /metrics: http://localhost:$$admin, this host only; admin token: ADMIN_TOKEN in .env)"; \
	echo "try: curl -s -X POST -H \"Authorization: Bearer \$$(sed -n 's/^ADMIN_TOKEN=//p' .env)\" -H 'Content-Type: application/json' -d '{\"name\": \"Acme\"}' http://localhost:$$admin/admin/tenants"

up-placements: ## `make up` plus a second PostgreSQL, placement `dedicated` (docs/compose.md)
	@$(MAKE) --no-print-directory up COMPOSE="docker compose -f docker-compose.yml -f docker-compose.placements.yml"

down: ## Stop the compose stack (data stays in its volume; `docker compose down -v` drops it)
	@# --remove-orphans: also db-dedicated, when `make up-placements` started it.
	docker compose --profile scale --profile loadtest down --remove-orphans

logs: ## Follow the compose stack's logs
	docker compose --profile scale --profile loadtest logs -f

test-compose: $(INSTALLED) ## Bring the compose stack up, run the e2e suite against it, tear it down
	$(PY) tests/compose/run.py

test-citus: $(INSTALLED) ## Coordinator + 2 workers (needs Citus installed), docs/scaling.md §6, e2e isolation
	$(PY) tests/citus/run.py

load: $(INSTALLED) ## Locust, headless, per tenant, against $$LOCUST_HOST
	$(PY) -m loadtests $(LOCUST_ARGS)

load-noisy: $(INSTALLED) ## Noisy neighbours: a flood against $$LOCUST_HOST, then the attacks (fairness on vs off)
	$(PY) -m loadtests --noisy $(LOCUST_ARGS)
	$(PY) -m loadtests --attacks

load-attacks: $(INSTALLED) ## Only the attacks: slow bodies, heavy pages, random keys; on stacks it starts
	$(PY) -m loadtests --attacks

load-lifecycle: $(INSTALLED) ## A 1,000,000-row tenant exported under writes and purged under load (LIFECYCLE_ROWS)
	$(PY) -m bench.lifecycle

load-move: $(INSTALLED) ## A 1,000,000-row tenant moved shared -> dedicated -> shared under load (MOVE_ROWS)
	$(PY) -m bench.movelive

bench: $(INSTALLED) ## The benchmarks; prints ratios measured side by side
	$(PY) -m bench
