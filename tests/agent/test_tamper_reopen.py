"""A lid that is shut and opened again is a new tamper event even when the pin factory lost the shutting edge.

gpiozero's devices pass on a change of their state only: an opening edge that reaches a device that still believes
the lid open (its shutting edge lost) called no handler, so the reopening was seen by nobody — the once-a-second
level check misses a shut shorter than its settle time. Found by a hostile review.

What gpiozero's MockFactory itself does, measured here: it loses no edge (every ``drive_high``/``drive_low`` calls
the device's callback at once, on the driving thread, and it ignores ``bounce_time``); a lost edge is therefore
made as the other tests of missed edges make it, by changing the mock pin's state without its callback
(``_change_state``), as a pin factory on a Pi does when an edge is lost.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.tamper import TamperSwitch
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import generate_signing_key
from tests.agent.helpers import RecordingSpeaker, wait_until

PIR, LID = 17, 27


class Moves:
    """What a switch's handlers said, in order."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self._cond = threading.Condition()

    def opened(self) -> None:
        with self._cond:
            self.said.append("open")
            self._cond.notify_all()

    def shut(self) -> None:
        with self._cond:
            self.said.append("shut")
            self._cond.notify_all()


@pytest.mark.parametrize("bounce_s", [None, 0.05])
def test_the_mock_pin_factory_loses_no_edge_of_a_quick_shut_and_reopen(bounce_s: float | None) -> None:
    pins = MockFactory()
    moves = Moves()
    with TamperSwitch(LID, bounce_s=bounce_s, pin_factory=pins) as switch:
        pins.pin(LID).drive_low()  # shut (the pull-up reads open until then)
        switch.set_handlers(on_start=moves.opened, on_end=moves.shut)
        for _ in range(3):
            pins.pin(LID).drive_high()
            pins.pin(LID).drive_low()
        pins.pin(LID).drive_high()
    pins.reset()
    assert moves.said == ["open", "shut"] * 3 + ["open"]


def test_an_opening_edge_after_a_lost_shutting_edge_is_a_shut_then_an_opening() -> None:
    pins = MockFactory()
    moves = Moves()
    with TamperSwitch(LID, pin_factory=pins) as switch:
        pins.pin(LID).drive_low()  # shut
        switch.set_handlers(on_start=moves.opened, on_end=moves.shut)
        pins.pin(LID).drive_high()
        pins.pin(LID)._change_state(False)  # shut; the pin factory lost the edge
        pins.pin(LID).drive_high()  # opened again: this edge arrives
        assert switch.is_active
    pins.reset()
    assert moves.said == ["open", "shut", "open"]


def test_a_reopening_whose_shutting_edge_was_lost_is_a_second_tamper_event_stamped_at_its_edge(tmp_path: Path) -> None:
    pins = MockFactory()
    clock = SystemClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox, clock=clock
    )
    sensor, lid = PirSensor(PIR, pin_factory=pins), TamperSwitch(LID, pin_factory=pins)
    pins.pin(LID).drive_low()  # shut
    speaker = RecordingSpeaker()
    agent = SealAgent(
        recorder=recorder,
        motion=sensor,
        speaker=speaker,
        warning=WarningSettings(repeat_s=600, max_repeats=1, cooldown_s=0),
        heartbeat_s=3600,
        clock=clock,
        tamper=lid,
    )
    agent.start()

    def tampers() -> list[dict[str, object]]:
        events = [decode_envelope(e.data) for e in outbox.pending(limit=100)]
        return [e.payload for e in events if e.type is EventType.TAMPER]

    try:
        pins.pin(LID).drive_high()  # pried open
        assert wait_until(lambda: len(tampers()) == 1, 30)
        pins.pin(LID)._change_state(False)  # shut again; its edge lost
        pins.pin(LID).drive_high()  # pried open again, at once
        assert wait_until(lambda: len(tampers()) == 2, 5), "the reopening was not recorded"
        assert "detected_by" not in tampers()[1], tampers()[1]  # its own edge, not a late catch
        assert speaker.wait_plays(2, timeout=30)
    finally:
        agent.stop()
        recorder.close()
        sensor.close()
        lid.close()
        outbox.close()
        pins.reset()
