"""Every event's ``ts`` is in the wall clock the chain says is in force at its ``seq``: the events after a
``clock_stepped`` carry the new clock, those before it the old one (docs/protocol.md, "The seal's clock").

Found by a hostile review: an intrusion whose edge came before NTP stepped the clock, but whose event was committed
after the ``clock_stepped`` (its snapshots were still being encoded), was signed with the old clock's time, so a court
reading the chain by that rule dated it days early. The seal here is the real agent on gpiozero's mock pins, with the
real clocks, the wall clock moved by a test (:class:`~tests.agent.test_clock_truth.SteppableClock`); the camera is the
memory double of :mod:`tests.agent.test_held_triggers`, whose capture waits until the test lets it finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.tamper import TamperSwitch
from seal_agent.errors import AudioError
from seal_agent.interfaces import ClockSync, WarningPlayback
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import Envelope, EventType, decode_envelope, parse_ts
from seal_protocol.signing import generate_signing_key
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import RecordingSpeaker, wait_until
from tests.agent.test_clock_truth import FixedClockState, SteppableClock
from tests.agent.test_held_triggers import MemoryCamera

PIR, LID = 17, 27
#: NTP's first step on a Pi that booted with a clock saved days ago.
STEP = timedelta(days=3)


@dataclass
class Seal:
    agent: SealAgent
    recorder: EventRecorder
    pins: MockFactory
    clock: SteppableClock
    camera: MemoryCamera

    def events(self) -> list[Envelope]:
        return self.camera.committed()

    def of(self, type: EventType) -> list[Envelope]:
        return [e for e in self.events() if e.type is type]


class BrokenSpeaker(RecordingSpeaker):
    """A speaker whose sound device cannot be opened: every warning fails at once."""

    def play_warning(self) -> WarningPlayback | None:
        super().play_warning()
        raise AudioError("Error opening PCM device.")


@pytest.fixture
def seal(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Seal]:
    """An armed seal with a camera (PIR, lid shut) whose clock the test can step, started; stopped afterwards. Its
    speaker is a :class:`RecordingSpeaker`, or the class the test's ``speaker`` parameter names."""
    pins, clock = MockFactory(), SteppableClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox, clock=clock
    )
    sensor, lid = PirSensor(PIR, pin_factory=pins), TamperSwitch(LID, pin_factory=pins)
    pins.pin(LID).drive_low()  # shut
    camera = MemoryCamera(outbox)
    agent = SealAgent(
        recorder=recorder,
        motion=sensor,
        speaker=getattr(request, "param", RecordingSpeaker)(),
        warning=WarningSettings(repeat_s=600, max_repeats=1, cooldown_s=0),
        heartbeat_s=3600,
        clock=clock,
        clock_state=FixedClockState(ClockSync(True, 8)),
        tamper=lid,
        camera=camera,
    )
    agent.start()
    try:
        yield Seal(agent, recorder, pins, clock, camera)
    finally:
        camera.open.set()
        agent.stop()
        recorder.close()
        sensor.close()
        lid.close()
        outbox.close()
        pins.reset()


def _told_in_the_new_clock(event: Envelope, stepped: Envelope) -> None:
    """``event`` happened shortly before the step: told in the new clock, it is a little before the step's
    ``after`` (the old clock would put it ``STEP`` earlier)."""
    ts, after = parse_ts(event.ts), parse_ts(stepped.payload["after"])
    assert after - timedelta(minutes=1) <= ts <= after, (event.type.value, event.ts, stepped.payload)


@pytest.mark.parametrize("kind", [EventType.INTRUSION, EventType.TAMPER])
def test_a_trigger_before_a_step_whose_event_comes_after_the_clock_stepped_is_told_in_the_new_clock(
    seal: Seal, kind: EventType
) -> None:
    seal.camera.open.clear()  # its snapshots are still being encoded
    seal.pins.pin(PIR if kind is EventType.INTRUSION else LID).drive_high()  # someone enters / the lid is pried open
    assert seal.camera.capturing.wait(30), "the trigger was not seen"
    seal.clock.offset += STEP  # NTP steps the clock while its event is being made
    assert wait_until(lambda: seal.of(EventType.CLOCK_STEPPED), timeout=30), "no clock_stepped"
    seal.camera.open.set()
    assert seal.agent.wait_recorded(30)

    [stepped], [event] = seal.of(EventType.CLOCK_STEPPED), seal.of(kind)
    assert stepped.seq < event.seq
    _told_in_the_new_clock(event, stepped)
    assert parse_ts(event.ts) <= parse_ts(stepped.ts)  # it happened before the step


def test_an_event_recorded_before_the_timer_saw_a_step_comes_after_its_clock_stepped(seal: Seal) -> None:
    """The timer compares the clocks about once a second; an event recorded meanwhile, stamped by the new clock, came
    before the ``clock_stepped`` in the chain. Now the event that sees the step first puts it in line before itself."""
    seal.clock.offset += STEP
    beat = seal.agent.heartbeat()  # at once: before the timer's next look
    [stepped] = seal.of(EventType.CLOCK_STEPPED)
    assert stepped.seq < beat.seq
    # Told in the new clock: the beat's moment is read as it is asked for, just before it takes its place (where the
    # step is seen), so its ts may be a millisecond or so before the step's ``after`` (ts need not grow with seq), and
    # never the step's length before it, as in the old clock.
    ts, after = parse_ts(decode_envelope(beat.data).ts), parse_ts(stepped.payload["after"])
    assert after - timedelta(seconds=1) <= ts <= after + timedelta(seconds=1), (beat, stepped.payload)
    assert abs(stepped.payload["step_ms"] - STEP // timedelta(milliseconds=1)) <= 1000, stepped.payload


def test_an_event_held_on_a_full_disk_keeps_the_clock_of_its_place_before_a_later_step(seal: Seal) -> None:
    """An intrusion held in line (a full disk) took its place before the step: committed after the room is made, it
    still comes before the ``clock_stepped``, told in the old clock, as the rule reads it."""
    disk = FullDisk(seal.recorder)
    disk.fill()
    seal.pins.pin(PIR).drive_high()
    assert wait_until(lambda: seal.recorder.held == 1, 30), "the intrusion was not held"
    seal.clock.offset += STEP
    assert wait_until(lambda: seal.recorder.held == 2, 30), "the step was not put in line"
    disk.make_plenty_of_room()
    seal.agent.heartbeat()  # commits the held ones first
    [stepped], [intrusion] = seal.of(EventType.CLOCK_STEPPED), seal.of(EventType.INTRUSION)
    assert intrusion.seq < stepped.seq
    before = parse_ts(stepped.payload["before"])
    assert before - timedelta(minutes=1) <= parse_ts(intrusion.ts) <= before


@pytest.mark.parametrize("seal", [BrokenSpeaker], indirect=True)
def test_a_speaker_failure_before_a_step_is_told_in_the_clock_of_the_heartbeat_that_reports_it(seal: Seal) -> None:
    """The heartbeat's ``speaker_failure`` names when the last failure was: kept as wall time, a heartbeat after a
    step told it in the old clock among times of the new one."""
    seal.pins.pin(PIR).drive_high()  # the warning fails
    assert seal.agent.wait_recorded(30)
    assert seal.of(EventType.INTRUSION)[0].payload["warning"] == "failed"
    seal.clock.offset += STEP
    assert wait_until(lambda: seal.of(EventType.CLOCK_STEPPED), timeout=30), "no clock_stepped"
    beat = decode_envelope(seal.agent.heartbeat().data)
    failed_at = parse_ts(beat.payload["speaker_failure"]["ts"])
    assert parse_ts(beat.ts) - timedelta(minutes=1) <= failed_at <= parse_ts(beat.ts), beat.payload
