"""What a ``seal-server`` command commits reaches the open pages live, all real: the command runs as a process of
its own, the court's pages under uvicorn (or a court process's end of the live feed) on a private Mosquitto. A seal
registered and bound to the judge's case is on the judge's open overview without a reload, and one bound to another
case is not; a seal moved, a user assigned, a case added are each told on the feed; a command with no broker (or one
that refuses it) still does its work and says on stderr that the open pages were not told."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol.signing import generate_signing_key, public_key_b64
from server.auth.access import Role
from server.core.db import SessionFactory, session_scope
from server.core.live import Change, LiveHub
from server.core.live_feed import LiveFeed
from server.core.metrics import IngestMetrics
from server.seals.models import Seal
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A, CASE_B, SimulatedSeal, add_test_case
from tests.server.mqtt_helpers import server_mqtt_settings
from tests.server.test_live_feed import Page
from tests.web.test_live_across_processes import (  # noqa: F401 (fixtures)
    SEAL,
    _next_other_than_heartbeat,
    _worker_config,
    judges_overview,
    pages,
    seal,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
NOT_TOLD = "open pages were not told"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``seal-server ARGS --config CONFIG`` as a process of its own, to its end."""
    command = [sys.executable, "-m", "server.cli", *args, "--config", str(config)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def config(broker: PrivateBroker, database_url: str, tmp_path: Path) -> Path:
    """A command line's configuration: the court's database and broker."""
    (tmp_path / "cli").mkdir()
    return _worker_config(tmp_path / "cli" / "server.toml", database_url, broker, free_port())


@pytest.fixture
def court_feed(broker: PrivateBroker, tmp_path: Path) -> Iterator[Page]:
    """A court process's end of the live feed (as ``seal-server run`` has it), and a page subscribed to its hub."""
    (tmp_path / "run").mkdir()
    hub = LiveHub()
    feed = LiveFeed(server_mqtt_settings(broker, tmp_path / "run"), metrics=IngestMetrics(), hub=hub)
    feed.start()
    page = Page(hub)
    try:
        assert feed.wait_subscribed(30), "the feed did not subscribe"
        yield page
    finally:
        page.close()
        feed.stop()


def test_a_seal_added_on_the_command_line_is_on_the_judges_open_overview_and_one_of_another_case_is_not(
    pages: str,  # noqa: F811 - the fixture imported above
    config: Path,
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as session:
        add_test_case(session, CASE_B)
    with judges_overview(pages) as messages:
        elsewhere = cli(config, "seal", "add", "seal-elsewhere", "--case", CASE_B, "--public-key", _key())
        assert elsewhere.returncode == 0, elsewhere.stderr
        added = cli(config, "seal", "add", "seal-added", "--case", CASE_A, "--public-key", _key())
        assert added.returncode == 0, added.stderr
        event, data = _next_other_than_heartbeat(messages, 30)
    assert event == "update", (event, data)
    assert "seal-added" in data, data
    assert "seal-elsewhere" not in data, data  # nothing of a case the judge may not see
    assert NOT_TOLD not in added.stderr


def test_a_seal_moved_a_user_assigned_and_a_case_added_on_the_command_line_are_told_on_the_live_feed(
    seal: SimulatedSeal,  # noqa: F811 - the fixture imported above
    court_feed: Page,
    config: Path,
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as session:
        add_test_case(session, CASE_B)
    add_user(session_factory, "officer", Role.OFFICER)

    moved = cli(config, "seal", "add", SEAL, "--case", CASE_B, "--public-key", seal.public_key)
    assert moved.returncode == 0, moved.stderr
    assert wait_until(lambda: {Change("binding", SEAL, CASE_A), Change("binding", SEAL, CASE_B)} <= _seen(court_feed))
    assert Change("seal", SEAL) in _seen(court_feed)

    assigned = cli(config, "user", "assign", "officer", "--case", CASE_B)
    assert assigned.returncode == 0, assigned.stderr
    assert wait_until(lambda: Change("assignment", case_no=CASE_B) in _seen(court_feed))

    case_no = "(2024)苏0214执9号"
    added = cli(config, "case", "add", case_no)
    assert added.returncode == 0, added.stderr
    assert wait_until(lambda: Change("case", case_no=case_no) in _seen(court_feed))


def test_a_command_that_commits_nothing_a_page_shows_sends_nothing(
    seal: SimulatedSeal,  # noqa: F811 - the fixture imported above
    court_feed: Page,
    config: Path,
    session_factory: SessionFactory,
) -> None:
    add_user(session_factory, "officer", Role.OFFICER)
    listed = cli(config, "user", "list")
    assert listed.returncode == 0, listed.stderr
    assigned = cli(config, "user", "assign", "officer", "--case", CASE_A)  # then one that does: the only change seen
    assert assigned.returncode == 0, assigned.stderr
    assert wait_until(lambda: _seen(court_feed))
    assert _seen(court_feed) == {Change("assignment", case_no=CASE_A)}


@pytest.mark.parametrize("broker_is", ["absent", "refusing"])
def test_a_command_without_the_broker_does_its_work_and_says_the_open_pages_were_not_told(
    broker_is: str, broker: PrivateBroker, database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    with session_scope(session_factory) as session:
        add_test_case(session, CASE_A)
    config = _worker_config(tmp_path / "server.toml", database_url, broker, free_port())
    if broker_is == "absent":
        broker.stop()
    else:
        (tmp_path / "worker-mqtt-password").write_text("not-the-password\n")

    added = cli(config, "seal", "add", "seal-offline", "--case", CASE_A, "--public-key", _key())

    assert added.returncode == 0, added.stderr
    assert "seal seal-offline bound to case" in added.stdout
    assert NOT_TOLD in added.stderr, added.stderr
    with session_factory() as session:
        assert session.scalars(select(Seal.case_no).where(Seal.device_id == "seal-offline")).all() == [CASE_A]


def _seen(page: Page) -> set[Change]:
    return set(page.take())


def _key() -> str:
    return public_key_b64(generate_signing_key())
