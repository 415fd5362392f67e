"""End-to-end fixtures: the server tests' database (SQLite always, PostgreSQL when configured), and the agent tests'
gpiozero mock pins with the real agent's runtime on them."""

from pathlib import Path

import pytest

from tests.agent.conftest import mock_pins, runtimes  # noqa: F401 - fixtures, re-exported for these tests
from tests.server.conftest import database_url  # noqa: F401 - a fixture, re-exported for these tests

#: pytest-timeout's limit of an end-to-end test without one of its own: each starts seal-server, and its waits for
#: that alone go up to 90 s on a loaded machine; pyproject's 120 s per test, setup included, is too little there.
E2E_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))
