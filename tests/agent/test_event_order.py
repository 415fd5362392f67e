"""Events are committed in the order they happened ("signed means true"), also on a full disk and at start-up.

An event the outbox refused (SQLite's own ``SQLITE_FULL``: :class:`~tests.agent.full_disk.FullDisk`) waits for room;
a later event must not overtake it once there is room: an intrusion while armed must never read as one after the
disarm that followed it. And one opening of the lid is one ``tamper`` event, even when it comes just as the agent
starts and reads the lid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.tamper import TamperSwitch
from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, decode_envelope, parse_ts
from seal_protocol.signing import generate_signing_key
from tests.agent.full_disk import FullDisk, OutboxFailures
from tests.agent.helpers import RecordingSpeaker, pulse

PIR, LID = 17, 27
#: Refusals of the intrusion logged before there is room: the old worker then slept 4 s before trying again, longer
#: than a disarm waits (SETTLE_S) before recording.
REFUSALS = 4


class OpensWhenRead(MockPin):
    """A mock pin whose level, once :attr:`open_on_read` is set, goes high just as it is next read: the lid opens
    between the agent setting its handlers and reading the lid at start (the edge is handled first, on this thread)."""

    open_on_read = False

    def _get_state(self) -> Any:
        if self.open_on_read and self._function == "input":
            self.open_on_read = False
            self.drive_high()
        return super()._get_state()


@dataclass
class Seal:
    agent: SealAgent
    outbox: Outbox
    pins: MockFactory
    recorder: EventRecorder

    def events(self) -> list[Any]:
        return [decode_envelope(e.data) for e in self.outbox.pending(limit=5000)]

    def after(self, filled: int) -> list[Any]:
        """The events committed after ``filled``, the seq of the last event that filled the disk."""
        return [e for e in self.events() if e.seq > filled]


@pytest.fixture
def seal(tmp_path: Path) -> Iterator[Seal]:
    """An armed seal on mock pins (PIR, lid shut), started, its refusals counted; stopped and closed afterwards."""
    pins = MockFactory(pin_class=OpensWhenRead)
    clock = SystemClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox, clock=clock
    )
    sensor, lid = PirSensor(PIR, pin_factory=pins), TamperSwitch(LID, pin_factory=pins)
    pins.pin(LID).drive_low()  # shut
    agent = SealAgent(
        recorder=recorder,
        motion=sensor,
        speaker=RecordingSpeaker(),
        warning=WarningSettings(repeat_s=600, max_repeats=1, cooldown_s=0),
        heartbeat_s=3600,
        clock=clock,
        tamper=lid,
    )
    try:
        yield Seal(agent, outbox, pins, recorder)
    finally:
        agent.stop()
        recorder.close()
        sensor.close()
        lid.close()
        outbox.close()
        pins.reset()


@pytest.fixture
def refusals() -> Iterator[OutboxFailures]:
    failures = OutboxFailures()
    logging.getLogger("seal_agent").addHandler(failures)
    try:
        yield failures
    finally:
        logging.getLogger("seal_agent").removeHandler(failures)


def _held_intrusions(seal: Seal, refusals: OutboxFailures, presences: int) -> tuple[FullDisk, int]:
    """Start the seal, fill its disk, let ``presences`` people pass while the first intrusion is refused, and wait
    until it was refused :data:`REFUSALS` times; the disk is still full. The disk, and the seq that filled it."""
    seal.agent.start()
    disk = FullDisk(seal.recorder)
    disk.fill()
    filled = max(e.seq for e in seal.events())
    for _ in range(presences):
        pulse(seal.pins, PIR)
        assert refusals.wait(refusals.count + 1, timeout=30), "the intrusion was not refused"
    assert refusals.wait(REFUSALS, timeout=60), "the seal did not try the intrusion again"
    return disk, filled


@pytest.mark.parametrize("presences", [1, 2])
def test_a_disarm_once_there_is_room_never_overtakes_an_intrusion_that_waited_for_it(
    seal: Seal, refusals: OutboxFailures, presences: int
) -> None:
    """The intrusions happened while armed; the disarm comes once the court's receipt made room. The chain must say
    intrusion(s), then disarmed — the second intrusion, queued behind the first, too."""
    disk, filled = _held_intrusions(seal, refusals, presences)
    disk.make_room()

    assert seal.agent.disarm("court command 9", by=9)

    assert seal.agent.wait_recorded(30)
    events = seal.after(filled)
    assert [e.type for e in events] == [EventType.INTRUSION] * presences + [EventType.DISARMED]
    assert all(e.payload["armed"] is True for e in events[:presences])
    assert [parse_ts(e.ts) for e in events] == sorted(parse_ts(e.ts) for e in events)


def test_a_disarm_while_an_intrusion_still_waits_for_room_is_refused_not_recorded_before_it(
    seal: Seal, refusals: OutboxFailures
) -> None:
    """The disk is still full: the disarm cannot be committed after the intrusion, so it is not carried out (its
    command comes again); once there is room, the intrusion comes first."""
    disk, filled = _held_intrusions(seal, refusals, 1)
    with pytest.raises(OutboxError):
        seal.agent.disarm("court command 9", by=9)
    assert seal.agent.armed
    disk.make_room()
    assert seal.agent.disarm("court command 9", by=9)
    assert [e.type for e in seal.after(filled)] == [EventType.INTRUSION, EventType.DISARMED]


def test_a_heartbeat_once_there_is_room_never_overtakes_an_intrusion_that_waited_for_it(
    seal: Seal, refusals: OutboxFailures
) -> None:
    disk, filled = _held_intrusions(seal, refusals, 1)
    disk.make_room()

    seal.agent.heartbeat()

    assert [e.type for e in seal.after(filled)] == [EventType.INTRUSION, EventType.HEARTBEAT]


def test_a_lid_opened_just_as_the_agent_starts_gives_one_tamper_event(seal: Seal) -> None:
    """The lid opens after the agent set its handlers and before it reads the lid: the edge's handler and the
    start-up reading both see it open. One opening, one event."""
    pin = seal.pins.pin(LID)
    assert isinstance(pin, OpensWhenRead)
    pin.open_on_read = True

    seal.agent.start()

    assert not pin.open_on_read, "the agent did not read the lid at start"
    assert seal.agent.wait_recorded(30)
    assert [e.type for e in seal.events()].count(EventType.TAMPER) == 1, [e.payload for e in seal.events()]


def test_a_lid_open_before_the_start_gives_one_tamper_event_at_start(seal: Seal) -> None:
    seal.pins.pin(LID).drive_high()

    seal.agent.start()

    assert seal.agent.wait_recorded(30)
    tampers = [e.payload for e in seal.events() if e.type is EventType.TAMPER]
    assert [t["at_start"] for t in tampers] == [True]
