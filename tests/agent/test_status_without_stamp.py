"""A connection whose stamp the seal cannot keep says no status at all, and still delivers its events
(seal_agent.connection_stamps; docs/protocol.md, "Status")."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.connection_stamps import STAMP_FILE
from seal_dev.broker import PrivateBroker
from seal_protocol import SealStatus
from tests.agent.helpers import CourtSubscriber, pulse, write_config
from tests.agent.helpers import RuntimeFactory as Factory

DEVICE = "seal-test-1"


def test_a_seal_that_cannot_keep_its_connection_stamp_sends_no_status_but_its_events(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: Factory,
    mock_pins: MockFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk before the seal ever kept a stamp: no room for the stamp file, nothing to write over in place. An
    ``online`` (and a Will) with a stamp kept nowhere would, after a reboot with the clock set back, outrank the
    seal's later connections at the court; evidence matters more than presence, so it connects without them."""
    config = write_config(tmp_path, broker)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / f"{STAMP_FILE}.tmp").symlink_to("/dev/full")  # every new file there meets ENOSPC
    runtime = runtimes(config)
    with caplog.at_level(logging.ERROR, logger="seal_agent.connection_stamps"):
        runtime.start()
        pulse(mock_pins)
        assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE), timeout=30)
    runtime.close()
    assert court.wait_for(lambda c: len(c.seqs(DEVICE)) >= 2)
    assert court.last_status(DEVICE) is None  # no online, no goodbye, no Will: nothing unkept was said
    assert not [s for s in court.stamps if s[0] == DEVICE]
    assert any("this connection sends no status" in r.getMessage() for r in caplog.records)

    # The failed file was given back (here, that made room): the next connection keeps its stamp and says so.
    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE)
    [(_, _, stamp)] = [s for s in court.stamps if s[0] == DEVICE]
    assert (state / STAMP_FILE).read_text("ascii").strip() == stamp
