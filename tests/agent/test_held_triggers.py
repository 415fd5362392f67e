"""Triggers whose events wait for room on a full disk, or are slow to make: what they hold, and what may pass them.

A trigger's event held in line (the outbox answers ``SQLITE_FULL``: :class:`~tests.agent.full_disk.FullDisk`) costs
no thread and a bounded amount of snapshot memory; its snapshots are stored only once the event listing them is
committed, and its ``snapshot_taken`` names its seq, also when the event is committed only by the recorder's close.
An arm or disarm never overtakes a trigger's event that is still being made; a follow-up hook that hangs does not
keep the triggers after it waiting past the stop. The camera is a :class:`~seal_agent.interfaces.EvidenceCamera`
double whose snapshots are bytes in memory; everything else is the real agent on gpiozero's mock pins.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.held_snapshots import HELD_EVIDENCE_MAX
from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.sensor_bound import SensorLimits
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.tamper import TamperSwitch
from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import generate_signing_key
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import RecordingSpeaker, pulse, wait_until

PIR, LID = 17, 27
FOLLOW_UP = "seal-trigger-follow-up"


class HeldEvidence:
    """One trigger's snapshot in memory (:class:`~seal_agent.interfaces.TriggerEvidence`); :meth:`keep` notes
    whether the event listing it was committed by then."""

    def __init__(self, camera: MemoryCamera, number: int) -> None:
        self._camera = camera
        self.jpeg: bytes | None = f"jpeg {number}".encode() * 1000
        self.hashes = [hashlib.sha256(self.jpeg).hexdigest()]
        self.kept_after_commit: bool | None = None

    def keep(self) -> list[dict[str, str]]:
        listed = any(self.hashes[0] in event.payload.get("snapshots", []) for event in self._camera.committed())
        self.kept_after_commit = listed
        jpeg, self.jpeg = self.jpeg, None
        return [] if jpeg is not None else [{"sha256": self.hashes[0], "reason": "dropped"}]

    def drop(self, reason: str) -> None:
        self.jpeg = None

    def wait_later(self) -> list[str]:
        return []

    def later_not_stored(self) -> list[dict[str, str]]:
        return []


@dataclass
class MemoryCamera:
    """An :class:`~seal_agent.interfaces.EvidenceCamera` whose captures wait for :attr:`open` (set by default)."""

    outbox: Outbox
    state: str = "ok"
    evidence: list[HeldEvidence] = field(default_factory=list)
    capturing: threading.Event = field(default_factory=threading.Event)
    open: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.open.set()

    def committed(self) -> list[Any]:
        return [decode_envelope(e.data) for e in self.outbox.pending(limit=5000)]

    def capture_around(self, trigger: float) -> HeldEvidence:
        self.capturing.set()
        assert self.open.wait(60), "the test never let the capture finish"
        self.evidence.append(HeldEvidence(self, len(self.evidence)))
        return self.evidence[-1]

    def motion_verdict(self, t0: float, t1: float, timeout: float) -> str:
        return "unknown"

    def snapshot_now(self) -> dict[str, Any]:
        return {"result": "no_frame", "snapshot": None, "camera": self.state, "frame_age_ms": None}


@dataclass
class Seal:
    agent: SealAgent
    outbox: Outbox
    pins: MockFactory
    recorder: EventRecorder
    camera: MemoryCamera
    disk: FullDisk

    def events(self) -> list[Any]:
        return self.camera.committed()

    def fill(self) -> int:
        """Fill the disk; the seq of the last event that filled it."""
        self.disk.fill()
        return max(e.seq for e in self.events())


@pytest.fixture
def seal(tmp_path: Path) -> Iterator[Seal]:
    """An armed seal with a camera on mock pins (PIR, lid shut), started; stopped and closed afterwards."""
    pins = MockFactory()
    clock = SystemClock()
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
        speaker=RecordingSpeaker(),
        warning=WarningSettings(repeat_s=600, max_repeats=1, cooldown_s=0),
        heartbeat_s=3600,
        clock=clock,
        tamper=lid,
        camera=camera,
        sensor_limits=SensorLimits(burst=100, refill_s=1),  # more presences than a flapping line's bound
    )
    agent.start()
    try:
        yield Seal(agent, outbox, pins, recorder, camera, FullDisk(recorder))
    finally:
        camera.open.set()
        agent.stop()
        recorder.close()
        sensor.close()
        lid.close()
        outbox.close()
        pins.reset()


def follow_ups() -> int:
    return sum(thread.name == FOLLOW_UP for thread in threading.enumerate())


def test_many_triggers_on_a_full_disk_hold_no_thread_each_and_come_in_order_once_there_is_room(seal: Seal) -> None:
    """Each presence's intrusion is held in line; none leaves a thread waiting for it, and past a bound their
    snapshots are not kept in memory (named in ``not_stored``: their hashes are signed). Once there is room, the
    intrusions come in their order, each snapshot stored only after its intrusion is committed, and every
    ``snapshot_taken`` follows its intrusion and names it."""
    filled = seal.fill()
    presences = HELD_EVIDENCE_MAX + 6
    for held in range(1, presences + 1):
        pulse(seal.pins, PIR)
        assert wait_until(lambda held=held: seal.recorder.held == held, 30), "the intrusion was not held"  # type: ignore[misc]

    assert follow_ups() == 0

    def in_memory() -> int:  # (the last trigger lets its snapshots go just after its event is put in line)
        return sum(e.jpeg is not None for e in seal.camera.evidence)

    assert wait_until(lambda: in_memory() <= HELD_EVIDENCE_MAX, 30), in_memory()
    kept = in_memory()
    assert all(e.kept_after_commit is None for e in seal.camera.evidence), "snapshots kept before their event"

    seal.disk.make_plenty_of_room()
    seal.agent.heartbeat()  # any event commits the held ones first
    assert seal.agent.wait_recorded(60, follow_ups=True)

    events = [e for e in seal.events() if e.seq > filled]
    intrusions = [e for e in events if e.type is EventType.INTRUSION]
    assert [e.type for e in events[:presences]] == [EventType.INTRUSION] * presences
    assert [e.payload["snapshots"] for e in intrusions] == [e.hashes for e in seal.camera.evidence]
    assert all(e.kept_after_commit for e in seal.camera.evidence)
    taken = {e.payload["trigger_seq"]: e for e in events if e.type is EventType.SNAPSHOT_TAKEN}
    assert sorted(taken) == [e.seq for e in intrusions]
    assert all(taken[e.seq].seq > e.seq for e in intrusions)
    dropped = [e.payload["snapshots"][0] for e in intrusions if taken[e.seq].payload["not_stored"]]
    assert len(dropped) == presences - kept


def test_a_disarm_while_an_intrusion_is_still_being_made_is_refused_not_recorded_before_it(seal: Seal) -> None:
    """The intrusion's snapshots take longer than a disarm waits: the disarm is refused (its command comes again),
    never committed before the intrusion that happened while armed."""
    start = max(e.seq for e in seal.events())
    seal.camera.open.clear()
    pulse(seal.pins, PIR)
    assert seal.camera.capturing.wait(30), "the presence was not seen"

    with pytest.raises(OutboxError):
        seal.agent.disarm("court command 9", by=9)
    assert seal.agent.armed

    seal.camera.open.set()
    assert seal.agent.disarm("court command 9", by=9)
    assert seal.agent.wait_recorded(30)
    types = [e.type for e in seal.events() if e.seq > start and e.type is not EventType.SNAPSHOT_TAKEN]
    assert types[:2] == [EventType.INTRUSION, EventType.DISARMED]
    assert next(e for e in seal.events() if e.type is EventType.INTRUSION).payload["armed"] is True


def test_an_intrusion_committed_only_by_the_close_is_named_by_its_snapshot_taken(seal: Seal) -> None:
    """The agent stops while the intrusion is held; room returns before the recorder closes (a receipt lands): the
    close commits the intrusion, then its snapshot_taken, which names the intrusion's seq."""
    filled = seal.fill()
    pulse(seal.pins, PIR)
    assert wait_until(lambda: seal.recorder.held == 1, 30), "the intrusion was not held"

    seal.agent.stop()
    seal.disk.make_room()
    seal.recorder.close()

    events = [e for e in seal.events() if e.seq > filled]
    assert [e.type for e in events] == [EventType.INTRUSION, EventType.SNAPSHOT_TAKEN]
    assert events[1].payload["trigger_seq"] == events[0].seq


def test_a_hung_intrusion_hook_leaves_no_later_follow_up_waiting_past_the_stop(seal: Seal) -> None:
    """``when_intrusion`` hangs on seal-trigger-commits; two lid openings come after it. Their events are committed
    in order, and the stop leaves no follow-up thread behind waiting for them."""
    start = max(e.seq for e in seal.events())
    hook_called, release = threading.Event(), threading.Event()

    def hung(_: Any) -> None:
        hook_called.set()
        release.wait(60)

    seal.agent.when_intrusion = hung
    pulse(seal.pins, PIR)
    assert hook_called.wait(30), "when_intrusion was not called"
    for opened in range(1, 3):
        seal.pins.pin(LID).drive_high()
        seal.pins.pin(LID).drive_low()
        assert wait_until(
            lambda opened=opened: [e.type for e in seal.events()].count(EventType.TAMPER) == opened,  # type: ignore[misc]
            30,
        ), "the lid opening was not recorded"

    try:
        seal.agent.stop()
        assert follow_ups() == 0
    finally:
        release.set()
    types = [e.type for e in seal.events() if e.seq > start and e.type is not EventType.SNAPSHOT_TAKEN]
    assert types == [EventType.INTRUSION, EventType.TAMPER, EventType.TAMPER]
