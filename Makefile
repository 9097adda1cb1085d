# Gantry: the two commands are `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PORT   ?= 8000
SANDBOX_PORT ?= 8900
SANDBOX_SPEED ?= 4
# The TCP-probed components on loopback, SANDBOX_PORT+N: each MySQL is the sandbox's handshake
# stand-in (sandbox/mysql.py), each Redis a real redis-server (demo/redis_server.py), left out
# when redis-server is not installed (those probes then say they have no address: unknown).
demo_port = $(shell echo $$(($(SANDBOX_PORT) + $(1))))
DEMO_REDIS_SERVER = $(shell command -v redis-server 2>/dev/null)
DEMO_MYSQL_TARGETS = prod/mysql=127.0.0.1:$(call demo_port,3),dev/mysql=127.0.0.1:$(call demo_port,4)
DEMO_REDIS_TARGETS = prod/redis=127.0.0.1:$(call demo_port,10),dev/redis=127.0.0.1:$(call demo_port,11)
comma := ,
DEMO_PROBE_TARGETS = $(DEMO_MYSQL_TARGETS)$(if $(DEMO_REDIS_SERVER),$(comma)$(DEMO_REDIS_TARGETS))
# The demo points every GCP client and every probe at the sandbox.
DEMO_GCP = GANTRY_COMPUTE_ENDPOINT=http://127.0.0.1:$(SANDBOX_PORT) \
  GANTRY_CLOUDBUILD_ENDPOINT=http://127.0.0.1:$(SANDBOX_PORT) \
  GANTRY_REGISTRY_URL=http://127.0.0.1:$(SANDBOX_PORT) \
  GANTRY_STACK_URL=http://127.0.0.1:$(SANDBOX_PORT)/stack \
  GANTRY_MONITORING_ENDPOINT=127.0.0.1:$(call demo_port,1) \
  GANTRY_PROBE_TARGETS=$(DEMO_PROBE_TARGETS) \
  GANTRY_GITHUB_WEBHOOK_SECRET=$${GANTRY_GITHUB_WEBHOOK_SECRET:-demo-webhook-secret}
# Databases the suite runs on besides SQLite; each is skipped with a reason when unreachable.
GANTRY_TEST_DATABASES ?= postgres mysql
export GANTRY_TEST_DATABASES

# GitHub's published artifacts the contract tests check the fake against (tests/contract/), fetched
# from npm at these pinned versions into var/npm/<name>/package/. Pinned here only.
OCTOKIT_PACKAGES := @octokit/webhooks-examples@7.6.1 @octokit/openapi@23.0.2 \
  @octokit/openapi-webhooks@12.1.0
NPM_DIR := var/npm

.PHONY: demo test lint format bench install install-dev browser github-artifacts clean docker-registry \
  redis-server stress-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# mysqlclient builds against libmysqlclient; install the headers from Debian when they are missing.
$(VENV)/.dev: requirements-dev.txt requirements-mysql.txt $(VENV)/.runtime
	@pkg-config --exists mysqlclient 2>/dev/null || { \
	  command -v apt-get >/dev/null && \
	  (apt-get install -y -q default-libmysqlclient-dev pkg-config build-essential >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q default-libmysqlclient-dev pkg-config build-essential >/dev/null)); }
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Browser tests use Debian's Chromium; install it when missing (root and apt-get only).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)) || \
	  echo "chromium not installed: browser tests will be skipped"; }

# The registry contract tests run Debian's docker-registry (CNCF distribution); install it when
# missing (root and apt-get only).
docker-registry:
	@command -v docker-registry >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q docker-registry >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q docker-registry >/dev/null)) || \
	  echo "docker-registry not installed: real-registry contract tests will be skipped"; }

# The outage tests (tests/outages/) start and kill a Redis of their own, and the demo runs one per
# Redis component; install Debian's redis-server when missing (root and apt-get only).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q redis-server >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null)) || \
	  echo "redis-server not installed: the outage tests will be skipped, the demo's Redis unknown"; }

# npm pack each package (cached: a package already unpacked at its version is left alone); Node
# and npm come from Debian when missing (root and apt-get only).
github-artifacts: $(NPM_DIR)/.octokit

$(NPM_DIR)/.octokit: Makefile
	@command -v npm >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q nodejs npm >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q nodejs npm >/dev/null)); } || true
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "npm not installed: contract tests will be skipped"; exit 0; fi; \
	set -e; mkdir -p $(NPM_DIR); \
	for spec in $(OCTOKIT_PACKAGES); do \
	  name=$${spec%@*}; version=$${spec##*@}; dir=$(NPM_DIR)/$${name#@octokit/}; \
	  if [ -f $$dir/.version ] && [ "$$(cat $$dir/.version)" = "$$version" ]; then continue; fi; \
	  rm -rf $$dir; mkdir -p $$dir; \
	  tarball=$$(cd $$dir && npm pack --silent "$$spec" | tail -n 1); \
	  tar -xzf $$dir/$$tarball -C $$dir; rm -f $$dir/$$tarball; \
	  echo "$$version" > $$dir/.version; echo "fetched $$spec into $$dir"; \
	done; \
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

# GANTRY_DEMO=1 installs the demo app (manage.py sandbox, create_demo_users) for every step.
demo: export GANTRY_DEMO := 1
demo: $(VENV)/.runtime redis-server
	$(PY) manage.py migrate --no-input
	$(PY) manage.py load_topology
	$(PY) manage.py create_demo_users
	@echo "Gantry on http://127.0.0.1:$(PORT)/  (sign in as approver / gantry-demo; Ctrl-C stops everything)"
	GANTRY_WEB_PORT=$(PORT) SANDBOX_PORT=$(SANDBOX_PORT) SANDBOX_SPEED=$(SANDBOX_SPEED) $(DEMO_GCP) \
	  $(BIN)/honcho start -f Procfile.demo

lint: $(VENV)/.dev
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(VENV)/.dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint browser github-artifacts docker-registry redis-server
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) tests/matrix.py

# Benchmarks: not part of `make test`; figures go to bench/out/ (report.md sums them up) and are
# quoted in docs/benchmarks.md. The load benches need PostgreSQL and Redis on 127.0.0.1.
bench: $(VENV)/.dev
	$(PY) bench/probe_sweep.py
	$(PY) bench/orchestration.py
	$(PY) bench/fault_campaign.py --deployments 100
	$(PY) bench/worker_kills.py
	$(PY) bench/dashboard_load.py
	$(PY) bench/dashboard_load.py --runs 1 --duration 30 --profile --out bench/out/dashboard_load_profile.json
	$(PY) bench/webhook_burst.py
	$(PY) bench/webhook_burst.py --runs 1 --profile --out bench/out/webhook_burst_profile.json
	$(PY) bench/report.py

# The engine, fault-campaign, GitHub-status and dashboard tests under `stress-ng --cpu 4`
# (bench/stress_check.py): they must pass on a machine far busier than CI's. Not part of
# `make test`; the result is quoted in docs/benchmarks.md. stress-ng comes from Debian when
# missing (root and apt-get only).
stress-check: $(VENV)/.dev browser github-artifacts
	@command -v stress-ng >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	  (apt-get install -y -q stress-ng >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q stress-ng >/dev/null)); } || \
	  { echo "stress-ng is not installed and cannot be here (root and apt-get only)"; exit 1; }
	$(PY) bench/stress_check.py

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache
