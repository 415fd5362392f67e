"""End-to-end fixtures: the server tests' database (SQLite always, PostgreSQL when configured)."""

from tests.server.conftest import database_url  # noqa: F401 - a fixture, re-exported for these tests
