# The two front-door commands: `make demo` and `make test`. Both install what is missing first.
DEMO_SECONDS ?= 0
DEMO_DIR ?= var/demo
VENV := .venv
# pytest-xdist workers: the suites mostly wait on real brokers, servers and browsers, so more workers than cores pay.
TEST_WORKERS ?= 4

.PHONY: setup demo test lint clean

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/bin/python scripts/demo.py --seconds $(DEMO_SECONDS) --dir $(DEMO_DIR)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf var/demo .pytest_cache .mypy_cache .ruff_cache
