"""The enclosure's tamper switch on gpiozero mock pins: pull-up, lid opened → pin high → tamper event + warning."""

from __future__ import annotations

import threading
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from seal_agent.tamper import TamperSwitch
from server.mosquitto import PrivateBroker
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, check_chain, verify_key, write_config

DEVICE = "seal-test-1"


def test_switch_reads_open_on_a_high_pin(mock_pins: MockFactory) -> None:
    opened, shut = threading.Event(), threading.Event()
    with TamperSwitch(27) as switch:
        assert switch.is_active  # the pull-up alone: an open (or cut) switch
        mock_pins.pin(27).drive_low()
        assert not switch.is_active
        switch.set_handlers(on_start=opened.set, on_end=shut.set)
        mock_pins.pin(27).drive_high()
        assert opened.wait(1) and switch.is_active
        mock_pins.pin(27).drive_low()
        assert shut.wait(1)


def test_lid_opened_records_tamper_and_warns(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, tamper=True)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    mock_pins.pin(27).drive_low()  # lid shut
    runtime.start()
    mock_pins.pin(27).drive_high()  # lid opened
    assert speaker.wait_plays(1, timeout=2)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "tamper"), timeout=5)
    tamper = court.payloads(DEVICE, "tamper")[0]
    assert tamper["state"] == "open" and tamper["warning"] == "played" and tamper["at_start"] is False
    runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat"))
    assert court.payloads(DEVICE, "heartbeat")[0]["tamper"] == "open"
    check_chain(court.of(DEVICE), verify_key(config))


def test_disarmed_seal_records_tamper_silently_and_an_open_lid_at_start_counts(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker, tamper=True)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    runtime.agent.disarm("removal approved")
    runtime.start()  # the pin still reads high: the lid is open at start
    assert court.wait_for(lambda c: c.payloads(DEVICE, "tamper"), timeout=5)
    tamper = court.payloads(DEVICE, "tamper")[0]
    assert tamper["at_start"] is True and tamper["warning"] == "suppressed_disarmed"
    assert speaker.plays == 0
