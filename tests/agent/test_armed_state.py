"""What a seal's events say of its armed state follows the order it changed in: the court takes the ``armed`` of
the seal's latest such event (``seq``) as its state, and a removal request refuses to lift a seal whose events say
it is armed again after it acknowledged the disarm."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
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


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[SealAgent, Outbox]]:
    factory = MockFactory()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox,
        clock=SystemClock(),
    )  # fmt: skip
    sensor = PirSensor(17, pin_factory=factory)
    agent = SealAgent(
        recorder=recorder,
        motion=sensor,
        speaker=RecordingSpeaker(),
        warning=WarningSettings(repeat_s=600, max_repeats=0, cooldown_s=0),
        heartbeat_s=3600,
    )
    try:
        yield agent, outbox
    finally:
        agent.stop()
        sensor.close()
        outbox.close()
        factory.reset()


def test_a_heartbeat_recorded_as_the_seal_is_disarmed_does_not_say_armed_after_the_disarm(
    agent: tuple[SealAgent, Outbox],
) -> None:
    seal, outbox = agent
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
