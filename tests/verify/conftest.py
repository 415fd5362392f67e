"""Fixtures of the verifier tests: the server tests' databases (SQLite always, PostgreSQL when configured), and a
line in the terminal summary with the number of byte flips tried."""

from __future__ import annotations

import pytest

from tests.server.conftest import database_url, engine, migrated_sqlite, session_factory

__all__ = ["database_url", "engine", "migrated_sqlite", "session_factory"]

#: Filled by the byte-flip test: how many flips were tried and detected.
FLIPS: list[int] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FLIPS:
        terminalreporter.write_line(f"seal-verify: {sum(FLIPS)} single-byte flips tried, every one detected")
