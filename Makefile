# 和兴证券短信服务管理系统 — the commands a newcomer needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install translations lint bench-import bench-search bench-audience bench-send clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

translations: $(STAMP)
	$(BIN)/python scripts/i18n.py compile

## make run: the whole system on embedded defaults (SQLite, embedded Redis, demo data).
run: install translations
	$(BIN)/python scripts/run.py

## make test: every test, browser tests included.
test: install translations
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check app tests scripts worker.py config.py
	$(BIN)/ruff format --check app tests scripts worker.py config.py

bench-import: install translations
	$(BIN)/python scripts/bench_import.py $(BENCH_ARGS)

## make bench-search: customer search at 1,000,000 customers on PostgreSQL (DATABASE_URL or
## TEST_DATABASE_URL), in a schema of its own that is dropped afterwards; JSON p50/p95/max ms.
bench-search: install translations
	$(BIN)/python scripts/bench_search.py $(BENCH_ARGS)

## make bench-audience: the audience preview at 1,000,000 customers on PostgreSQL
## (BENCH_DATABASE_URL, else TEST_DATABASE_URL, else the local test database); JSON out.
bench-audience: install translations
	$(BIN)/python scripts/bench_audience.py $(BENCH_ARGS)

## make bench-send: recipients built per second at 1,000,000 customers (PostgreSQL), and our
## send rate into Kannel's fake SMSC against Kannel's own (needs kannel, kannel-extras)
bench-send: install translations
	$(BIN)/python scripts/bench_send.py $(BENCH_ARGS)

clean:
	rm -rf instance/sms.db instance/redis.db* test-artifacts
