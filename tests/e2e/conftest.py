"""End-to-end fixtures: the server tests' database (SQLite always, PostgreSQL when configured), and the agent tests'
gpiozero mock pins with the real agent's runtime on them."""

from tests.agent.conftest import mock_pins, runtimes  # noqa: F401 - fixtures, re-exported for these tests
from tests.server.conftest import database_url  # noqa: F401 - a fixture, re-exported for these tests
