"""Edges the pin factory loses (a level changing within the bounce window): the level check catches them for the PIR
and for the tamper switch, and the event it gives says it was caught late (``detected_by: "level_check"``) and the
earliest the edge can have been (``not_before``), instead of passing its ``ts`` off as the sensor's edge."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from seal_dev.broker import PrivateBroker
from seal_protocol import parse_ts
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, write_config

DEVICE = "seal-test-1"


def test_a_lid_opened_within_the_bounce_window_of_its_closing_gives_a_tamper_event_caught_by_the_level_check(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, tamper=True), speaker=speaker)
    pin = mock_pins.pin(27)
    pin.drive_high()  # lid open at start (installation)
    runtime.start()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "tamper"), timeout=30)  # at_start
    assert "detected_by" not in court.payloads(DEVICE, "tamper")[0]  # seen at start, not caught late
    time.sleep(0.2)
    pin.drive_low()  # lid shut (its edge seen)
    time.sleep(0.2)
    shut = datetime.now(UTC)
    pin._change_state(True)  # pried open; the pin factory lost the edge
    opened = datetime.now(UTC)
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "tamper")) == 2, timeout=30), "no tamper event"
    second = [r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "tamper"][1]
    payload = second.payload
    assert (payload["state"], payload["at_start"], payload["detected_by"]) == ("open", False, "level_check"), payload
    assert parse_ts(payload["not_before"]) <= opened <= parse_ts(second.ts) + _MS
    assert parse_ts(payload["not_before"]) >= shut - _S  # the last reading of the shut lid, not some old one
    assert payload["warning"] != "suppressed_disarmed" and speaker.wait_plays(2, timeout=30)  # armed: it warns
    # A lid shut again whose edge is lost is caught too: the next open, lost as well, is a third event.
    time.sleep(0.2)
    pin._change_state(False)
    time.sleep(2.5)
    pin._change_state(True)
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "tamper")) == 3, timeout=30), "the shut was not caught"
    assert court.payloads(DEVICE, "tamper")[2]["detected_by"] == "level_check"


def test_a_pir_edge_caught_by_the_level_check_says_so_and_when_it_can_have_been_at_the_earliest(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=0))
    runtime.start()
    pin = mock_pins.pin(17)
    pin.drive_high()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "intrusion"), timeout=30)
    first = court.payloads(DEVICE, "intrusion")[0]
    assert "detected_by" not in first and "not_before" not in first  # an edge seen: stamped at the edge
    time.sleep(0.1)
    pin.drive_low()  # presence ended (edge seen)
    time.sleep(0.2)
    ended = datetime.now(UTC)
    pin._change_state(True)  # someone again; the pin factory lost the edge
    entered = datetime.now(UTC)
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 2, timeout=30)
    second = [r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "intrusion"][1]
    assert second.payload["detected_by"] == "level_check", second.payload
    not_before = parse_ts(second.payload["not_before"])
    assert ended - _S <= not_before <= entered <= parse_ts(second.ts) + _MS


_MS = parse_ts("2026-01-01T00:00:00.001Z") - parse_ts("2026-01-01T00:00:00.000Z")
_S = _MS * 1500  # the level check reads at least once a second


def test_a_late_tamper_edge_after_the_level_check_caught_it_is_not_a_second_prying(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """An edge held up (its callback waits while an arm or disarm holds the seal's lock, up to 2 s) after the level
    check caught the opening is the same opening: one tamper event, one warning. Found by a review."""
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, tamper=True), speaker=speaker)
    pin = mock_pins.pin(27)
    pin.drive_low()
    runtime.start()
    time.sleep(1.0)
    pin._change_state(True)  # lid pried open; its edge not yet delivered
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "tamper")) == 1, timeout=30)
    assert court.payloads(DEVICE, "tamper")[0]["detected_by"] == "level_check"
    pin._call_when_changed()  # the late edge
    time.sleep(3.0)
    opens = [p for p in court.payloads(DEVICE, "tamper") if p.get("state") == "open"]
    assert len(opens) == 1, opens
