# The two front-door commands: `make demo` and `make test`. Both install what is missing first.
DEMO_SECONDS ?= 0
DEMO_DIR ?= var/demo
VENV := .venv

.PHONY: setup demo test lint clean

setup:
	./scripts/setup.sh

demo: setup
	$(VENV)/bin/python scripts/demo.py --seconds $(DEMO_SECONDS) --dir $(DEMO_DIR)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

clean:
	rm -rf var/demo .pytest_cache .mypy_cache .ruff_cache
