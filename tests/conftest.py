"""Shared fixtures: a private, authenticated Mosquitto per test that needs one."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_dev.broker import PrivateBroker
from server.logs import QUIET_LOGGERS
from server.seals.broker_files import SERVER_USERNAME


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the reliability suites at their full counts (also SEAL_LONG_TESTS=1); see docs/reliability.md",
    )


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """An entry point's ``main`` configures the root logger, as it should; give pytest's back after every test.

    Left in place, a handler on a test's captured (then closed) stderr turns every later log record into a
    "Logging error" traceback printed from whichever thread logged it, which slows the seals' threads enough to
    change what timing tests see.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, quiet_level in quiet.items():
            logging.getLogger(name).setLevel(quiet_level)


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
