"""What a seal's events say of its armed state follows the order it changed in: the court takes the ``armed`` of
the seal's latest such event (``seq``) as its state, and a removal request refuses to lift a seal whose events say
it is armed again after it acknowledged the disarm."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import generate_signing_key
from tests.agent.helpers import RecordingSpeaker


class DisarmedMeanwhile(Mapping[str, object]):
    """A heartbeat's extra fields, read after its ``armed``: as they are read, the court's disarm comes in on its own
    thread (the commands' thread) and is given a moment to go through."""

    def __init__(self, agent: SealAgent) -> None:
        self.thread = threading.Thread(target=agent.disarm, args=("court command 7",), kwargs={"by": 7})

    def keys(self) -> list[str]:  # type: ignore[override]
        self.thread.start()
        self.thread.join(0.5)  # done, unless the heartbeat holds the seal's state until it is recorded
        return []

    def __getitem__(self, key: str) -> object:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:  # given, so read
        return True


class EdgeMeanwhile(DisarmedMeanwhile):
    """A heartbeat's extra fields, read while it is being recorded: someone walks in, and the warning must start
    without waiting for the heartbeat's commit (``played``: whether it did, within 30 s, while the heartbeat waited)."""

    def __init__(self, factory: MockFactory, speaker: RecordingSpeaker) -> None:
        self.factory, self.speaker, self.played = factory, speaker, False

    def keys(self) -> list[str]:  # type: ignore[override]
        # the edge on a thread of its own, as lgpio's callback thread on a Pi (a mock pin calls back on the caller's)
        threading.Thread(target=self.factory.pin(17).drive_high, daemon=True).start()
        self.played = self.speaker.wait_plays(1, timeout=30)
        return []


@dataclass
class Rig:
    agent: SealAgent
    outbox: Outbox
    speaker: RecordingSpeaker
    pins: MockFactory


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    factory = MockFactory()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox,
        clock=SystemClock(),
    )  # fmt: skip
    sensor = PirSensor(17, pin_factory=factory)
    speaker = RecordingSpeaker()
    agent = SealAgent(
        recorder=recorder,
        motion=sensor,
        speaker=speaker,
        warning=WarningSettings(repeat_s=600, max_repeats=0, cooldown_s=0),
        heartbeat_s=3600,
    )
    try:
        yield Rig(agent, outbox, speaker, factory)
    finally:
        agent.stop()
        sensor.close()
        outbox.close()
        factory.reset()


def test_a_heartbeat_recorded_as_the_seal_is_disarmed_does_not_say_armed_after_the_disarm(rig: Rig) -> None:
    seal, outbox = rig.agent, rig.outbox
    seal.start()
    meanwhile = DisarmedMeanwhile(seal)
    seal.heartbeat(meanwhile)
    meanwhile.thread.join(10)
    assert not seal.armed
    told = [decode_envelope(e.data) for e in outbox.pending(limit=100)]
    told = [e for e in told if e.type in (EventType.HEARTBEAT, EventType.DISARMED)]
    latest = max(told, key=lambda e: e.seq)
    assert (latest.type, latest.payload.get("armed", False)) == (EventType.DISARMED, False), [
        (e.seq, e.type.value, e.payload.get("armed")) for e in told
    ]


def test_a_pir_edge_while_a_heartbeat_is_recorded_starts_the_warning_at_once(rig: Rig) -> None:
    """The heartbeat records under the lock of the armed state, not under the sensor callbacks' one: an edge while
    its commit (an fsync on an SD card) is under way plays the warning meanwhile, then records its intrusion."""
    seal, outbox = rig.agent, rig.outbox
    seal.start()
    meanwhile = EdgeMeanwhile(rig.pins, rig.speaker)
    seal.heartbeat(meanwhile)
    assert meanwhile.played, "the warning waited for the heartbeat's commit"
    assert seal.wait_recorded(10)
    kinds = [decode_envelope(e.data).type for e in outbox.pending(limit=100)]
    assert kinds.count(EventType.INTRUSION) == 1 and kinds.count(EventType.HEARTBEAT) == 1, kinds
