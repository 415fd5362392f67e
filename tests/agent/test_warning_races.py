"""Deciding to warn and starting the warning are one step with respect to arm and disarm ("signed means true"): a
disarm never lets a warning start after its speaker stop, an edge never sees the seal between ``armed`` and the state
it tells, and a camera confirmation still pending at a disarm plays nothing and says ``suppressed_disarmed``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.tamper import TamperSwitch
from seal_agent.errors import OutboxError
from seal_agent.interfaces import WarningPlayback
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, decode_envelope, parse_ts
from seal_protocol.signing import generate_signing_key
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, pulse, wait_until, write_config
from tests.agent.test_camera_agent import camera_section
from tests.agent_camera.clips import black_frames, write_clip

PIR, LID = 17, 27


def _meanwhile(action: Callable[[], object]) -> None:
    """Run ``action`` on its own thread (as the court's commands or the sensor library would) and give it a moment:
    it is done by then, unless the seal holds the state it needs until the caller's step is over."""
    thread = threading.Thread(target=action)
    thread.start()
    thread.join(0.5)


class DisarmAtPlay(RecordingSpeaker):
    """The speaker seam: the court's disarm comes in just as the seal asks for its ``at``-th warning. ``calls``
    is what the seal did to the speaker, in order."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.agent: SealAgent | None = None
        self.calls: list[str] = []

    def play_warning(self) -> WarningPlayback | None:
        if self.plays + 1 == self.at and self.agent is not None:
            _meanwhile(lambda: self.agent and self.agent.disarm("court command 9", by=9))
        self.calls.append("play")
        return super().play_warning()

    def stop(self) -> None:
        self.calls.append("stop")
        super().stop()


class ArmingClock(SystemClock):
    """The clock seam: ``during_commit`` runs as the recorder reads the time of the next event it commits."""

    during_commit: Callable[[], None] | None = None

    def now(self) -> datetime:
        hook, self.during_commit = self.during_commit, None
        if hook is not None:
            hook()
        return super().now()


@dataclass
class Seal:
    agent: SealAgent
    outbox: Outbox
    pins: MockFactory
    recorder: EventRecorder

    def events(self) -> list[Any]:
        return [decode_envelope(e.data) for e in self.outbox.pending(limit=1000)]


@pytest.fixture
def make_seal(tmp_path: Path) -> Iterator[Callable[..., Seal]]:
    closers: list[Callable[[], None]] = []

    def make(speaker: RecordingSpeaker, *, clock: SystemClock | None = None, repeat_s: float = 600) -> Seal:
        pins = MockFactory()
        clock = clock or SystemClock()
        outbox = Outbox(tmp_path / "outbox.sqlite")
        recorder = EventRecorder(
            device_id="seal-a",
            case_no="(2024)苏0214执1号",
            signing_key=generate_signing_key(),
            outbox=outbox,
            clock=clock,
        )
        sensor, lid = PirSensor(PIR, pin_factory=pins), TamperSwitch(LID, pin_factory=pins)
        pins.pin(LID).drive_low()  # shut
        settings = WarningSettings(repeat_s=repeat_s, max_repeats=1, cooldown_s=0)
        agent = SealAgent(
            recorder=recorder,
            motion=sensor,
            speaker=speaker,
            warning=settings,
            heartbeat_s=3600,
            clock=clock,
            tamper=lid,
        )
        closers.extend([pins.reset, outbox.close, lid.close, sensor.close, agent.stop])
        return Seal(agent, outbox, pins, recorder)

    yield make
    for close in reversed(closers):
        close()


@pytest.mark.parametrize(("trigger", "at"), [("pir", 1), ("tamper", 1), ("repeat", 2)])
def test_a_disarm_racing_a_warning_stops_it_and_follows_its_event(
    make_seal: Callable[..., Seal], trigger: str, at: int
) -> None:
    """The disarm lands between the seal's decision to warn (PIR edge, lid opened, the timer's repeat) and the start
    of that warning. The warning must not start after the disarm's stop, and the event that says ``armed: true``
    is committed before ``disarmed``."""
    speaker = DisarmAtPlay(at)
    seal = make_seal(speaker, repeat_s=0.3)
    speaker.agent = seal.agent
    seal.agent.start()
    seal.pins.pin(LID if trigger == "tamper" else PIR).drive_high()
    assert speaker.wait_plays(at, timeout=10)
    assert seal.agent.wait_recorded(10, follow_ups=True)
    assert wait_until(lambda: not seal.agent.armed, timeout=10)
    assert speaker.calls[-1] == "stop", speaker.calls  # no warning started after the disarm silenced the speaker
    events = seal.events()
    kind = EventType.TAMPER if trigger == "tamper" else EventType.INTRUSION
    told = [(e.type, e.payload.get("armed")) for e in events if e.type in (kind, EventType.DISARMED)]
    assert told == [(kind, True), (EventType.DISARMED, None)], told


def test_an_edge_during_an_arm_sees_the_seal_armed_or_disarmed_never_between(make_seal: Callable[..., Seal]) -> None:
    """Someone walks in while ``armed`` is being committed. Before: the intrusion said ``armed: false,
    suppressed_disarmed`` after ``armed`` while arm() then warned that presence with no event saying so. Now the
    edge waits for the arm: its intrusion, after ``armed``, says ``armed: true`` and the warning it started."""
    speaker = RecordingSpeaker()
    clock = ArmingClock()
    seal = make_seal(speaker, clock=clock)
    seal.agent.start()
    assert seal.agent.disarm("local")
    clock.during_commit = lambda: _meanwhile(seal.pins.pin(PIR).drive_high)
    assert seal.agent.arm("court command 5", by=5)
    assert speaker.wait_plays(1, timeout=10)
    assert seal.agent.wait_recorded(10, follow_ups=True)
    events = seal.events()
    since = max(e.seq for e in events if e.type is EventType.DISARMED)
    told = [(e.type, e.payload.get("armed"), e.payload.get("warning")) for e in events if e.seq > since]
    assert told == [(EventType.ARMED, None, None), (EventType.INTRUSION, True, "played")], told
    assert speaker.plays == 1


def test_a_disarm_while_the_camera_confirms_plays_nothing_and_says_so(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    """``require_motion_confirmation`` with a covered lens (verdict ``unknown``, which never silences the seal): the
    intrusion is committed ``pending_confirmation``; the court's disarm arrives within the confirmation window. The
    disarmed seal must not warn, and its ``snapshot_taken`` says ``suppressed_disarmed``."""
    device = "seal-test-1"
    video = write_clip(tmp_path / "black.avi", black_frames(200))
    camera = camera_section(video, require_motion_confirmation=True, motion_window_s=1.0)
    speaker = RecordingSpeaker()
    runtime = runtimes(write_config(tmp_path, broker, camera=camera), speaker=speaker)
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    assert court.wait_for(lambda c: "camera_blind" in c.types(device), timeout=30)
    pulse(mock_pins)
    assert runtime.agent.disarm("court command 3", by=3)
    assert runtime.agent.wait_recorded(15, follow_ups=True)
    assert court.wait_for(lambda c: c.payloads(device, "snapshot_taken"), timeout=30)
    assert speaker.plays == 0
    [intrusion] = court.payloads(device, "intrusion")
    [follow_up] = court.payloads(device, "snapshot_taken")
    assert (intrusion["armed"], intrusion["warning"]) == (True, "pending_confirmation")
    assert (follow_up["warning"], follow_up.get("warning_languages")) == ("suppressed_disarmed", None), follow_up


def test_a_lid_opened_while_a_disarm_settles_is_signed_with_the_time_of_its_edge(
    make_seal: Callable[..., Seal],
) -> None:
    """A disarm while an intrusion's event waits in line on a full disk fails itself (its ``disarmed`` is refused with
    the intrusion ahead of it; an older agent first waited SETTLE_S holding the agent's lock): the seal stays armed.
    A lid opened around it warns, and its event is signed with the time of its edge, not of the lock's release."""
    speaker = RecordingSpeaker()
    seal = make_seal(speaker)
    seal.agent.start()
    disk = FullDisk(seal.recorder)
    disk.fill()
    seal.pins.pin(PIR).drive_high()  # someone: a warning, and an intrusion event stuck in the worker's retries
    assert speaker.wait_plays(1, 30)
    failed: list[BaseException] = []
    disarming = threading.Thread(target=lambda: _disarm(seal.agent, failed))
    disarming.start()
    time.sleep(0.2)  # the disarm is settling now
    opened = datetime.now(UTC)
    seal.pins.pin(LID).drive_high()  # the lid opens on the armed seal (its handler runs on this thread)
    disarming.join(30)
    assert len(failed) == 1 and isinstance(failed[0], OutboxError) and seal.agent.armed
    disk.make_room()
    assert wait_until(lambda: any(e.type is EventType.TAMPER for e in seal.events()), 30)
    [tamper] = [e for e in seal.events() if e.type is EventType.TAMPER]
    assert tamper.payload["armed"] is True
    assert (parse_ts(tamper.ts) - opened).total_seconds() < 1.0, (tamper.ts, opened)


def _disarm(agent: SealAgent, failed: list[BaseException]) -> None:
    try:
        agent.disarm("court command 9", by=9)
    except OutboxError as exc:
        failed.append(exc)
