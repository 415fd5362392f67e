"""A sensor's edge never waits for an ``armed``/``disarmed`` being written ("the PIR edge handling never blocks on
network/disk/sound"), and its event still keeps the armed state's order.

The outbox's commit is made slow with no seam in the seal's code: a second connection to the outbox file holds
SQLite's write lock (as a stalled SD card's fsync would hold the commit) while the court's arm or disarm commits.
Before, the edge's handler waited on the pin factory's callback thread (the tamper switch's too) until that commit was
done. Now it returns at once; its decision is made right after the change, against the state the change left, and
its event follows the change's.
"""

from __future__ import annotations

import gc
import sqlite3
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
#: How long the other connection holds the write lock at most, waiting for the edge's handler to return (the outbox
#: waits up to 5 s for it). Not a bound on the handler: it must return while the lock is held, whatever it takes.
HOLD_MAX_S = 4.0


@dataclass
class Seal:
    agent: SealAgent
    outbox: Outbox
    pins: MockFactory
    speaker: RecordingSpeaker

    def told(self, since: int) -> list[tuple[EventType, Any, Any]]:
        """(type, armed, warning) of the state changes and triggers committed after ``since``."""
        kinds = (EventType.ARMED, EventType.DISARMED, EventType.INTRUSION, EventType.TAMPER)
        events = [decode_envelope(e.data) for e in self.outbox.pending(limit=1000)]
        return [
            (e.type, e.payload.get("armed"), e.payload.get("warning"))
            for e in events
            if e.seq > since and e.type in kinds
        ]

    def last_seq(self) -> int:
        return max(e.seq for e in self.outbox.pending(limit=1000))


@pytest.fixture
def seal(tmp_path: Path) -> Iterator[Seal]:
    pins = MockFactory()
    clock = SystemClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox, clock=clock
    )
    sensor, lid = PirSensor(PIR, pin_factory=pins), TamperSwitch(LID, pin_factory=pins)
    pins.pin(LID).drive_low()  # shut
    speaker = RecordingSpeaker()
    settings = WarningSettings(repeat_s=600, max_repeats=0, cooldown_s=0)
    agent = SealAgent(
        recorder=recorder, motion=sensor, speaker=speaker, warning=settings, heartbeat_s=3600, clock=clock, tamper=lid
    )
    try:
        yield Seal(agent, outbox, pins, speaker)
    finally:
        agent.stop()
        recorder.close()
        sensor.close()
        lid.close()
        outbox.close()
        pins.reset()


def _committing(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside the outbox's commit (waiting there for the write lock). The garbage collector is
    off while the frames are taken: ``sys._current_frames`` holds the interpreter's lock of thread states while it
    allocates, a collection there runs finalizers, and one that waited for a lock held by a thread ending (which needs
    that lock of thread states) hung the test for good, past pytest-timeout (CPython 3.11, seen once in CI)."""
    gc.disable()
    try:
        frame = sys._current_frames().get(thread.ident or -1)
    finally:
        gc.enable()
    while frame is not None:
        if frame.f_code.co_name == "append" and frame.f_code.co_filename.endswith("outbox.py"):
            return True
        frame = frame.f_back
    return False


@pytest.mark.parametrize("pin", [PIR, LID], ids=["pir", "tamper"])
@pytest.mark.parametrize("change", ["disarm", "arm"])
def test_an_edge_while_arm_or_disarm_commits_returns_at_once_and_its_event_follows_the_change(
    seal: Seal, tmp_path: Path, change: str, pin: int
) -> None:
    seal.agent.start()
    if change == "arm":
        assert seal.agent.disarm("local")
    since = seal.last_seq()
    other = sqlite3.connect(tmp_path / "outbox.sqlite", isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the outbox: the change's commit waits for it
        done: list[bool] = []
        changing = threading.Thread(target=lambda: done.append(getattr(seal.agent, change)("court command 4", by=4)))
        changing.start()
        assert wait_until(lambda: _committing(changing), timeout=10), "the change never reached its commit"
        # the edge: a mock pin calls its handler on the calling thread, as lgpio's callback thread would
        edge = threading.Thread(target=seal.pins.pin(pin).drive_high)
        edge.start()
        edge.join(HOLD_MAX_S)
        returned_during_commit = not edge.is_alive() and _committing(changing)
        other.execute("COMMIT")
        edge.join(30)
        changing.join(30)
    finally:
        other.close()
    assert returned_during_commit, f"the edge's handler waited for the {change}'s commit"
    assert done == [True]
    assert seal.agent.wait_recorded(30, follow_ups=True)
    kind = EventType.INTRUSION if pin == PIR else EventType.TAMPER
    if change == "disarm":
        expected = [(EventType.DISARMED, None, None), (kind, False, "suppressed_disarmed")]
    else:
        expected = [(EventType.ARMED, None, None), (kind, True, "played")]
    assert seal.told(since) == expected
    assert seal.speaker.plays == (1 if change == "arm" else 0)
