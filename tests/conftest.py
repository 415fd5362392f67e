"""Shared fixtures: a private, authenticated Mosquitto per test that needs one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.mosquitto import SERVER_USERNAME, PrivateBroker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the reliability suites at their full counts (also SEAL_LONG_TESTS=1); see docs/reliability.md",
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A running Mosquitto on a free port with auth and the seal ACL.

    It holds one account, the court server's (``broker.users[SERVER_USERNAME]``); add seals with
    ``broker.add_user(device_id, password)`` followed by ``broker.reload()``.
    """
    instance = PrivateBroker(tmp_path / "broker", {SERVER_USERNAME: secrets.token_urlsafe(16)})
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
