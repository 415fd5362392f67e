"""What a trigger owes is recorded when the agent stops, too: the ``warning_result`` of an intrusion whose warning was
under way when the intrusion is committed only by the recorder's close (one the cool-down put off and the stop came
before owes none: no warning was started), and the
follow-ups (``snapshot_taken``, ``warning_result``) of triggers queued behind a ``when_intrusion`` hook that hangs —
with a stop that still ends in bounded time. Found by a hostile review: both were only logged, never signed.

Real agent, outbox and recorder on gpiozero's mock pins; the speaker's warnings stay under way until it is stopped,
and the camera is the in-memory double of :mod:`tests.agent.test_held_triggers`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.pir import PirSensor
from seal_agent.devices.tamper import TamperSwitch
from seal_agent.interfaces import WarningPlayback
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import RecordingSpeaker, wait_until
from tests.agent.test_held_triggers import FOLLOW_UP, LID, PIR, MemoryCamera, Seal


class PlayingSpeaker(RecordingSpeaker):
    """Every warning is under way (its first clip playing) until :meth:`stop` cuts it short."""

    def __init__(self) -> None:
        super().__init__()
        self.playbacks: list[WarningPlayback] = []

    def play_warning(self) -> WarningPlayback | None:
        with self._cond:
            self.plays += 1
            self._cond.notify_all()
        playback = WarningPlayback(self.languages)
        playback.playing(self.languages[0])
        self.playbacks.append(playback)
        return playback

    def stop(self) -> None:
        super().stop()
        for playback in self.playbacks:
            playback.end()


def _seal(tmp_path: Path, *, cooldown_s: float, camera: bool) -> Iterator[Seal]:
    pins = MockFactory()
    clock = SystemClock()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    recorder = EventRecorder(
        device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=generate_signing_key(), outbox=outbox, clock=clock
    )
    sensor, lid = PirSensor(PIR, pin_factory=pins), TamperSwitch(LID, pin_factory=pins)
    pins.pin(LID).drive_low()  # shut
    memory = MemoryCamera(outbox)
    agent = SealAgent(
        recorder=recorder,
        motion=sensor,
        speaker=PlayingSpeaker(),
        warning=WarningSettings(repeat_s=600, max_repeats=1, cooldown_s=cooldown_s),
        heartbeat_s=3600,
        clock=clock,
        tamper=lid,
        camera=memory if camera else None,
    )
    agent.start()
    try:
        yield Seal(agent, outbox, pins, recorder, memory, FullDisk(recorder))
    finally:
        memory.open.set()
        agent.stop()
        recorder.close()
        sensor.close()
        lid.close()
        outbox.close()
        pins.reset()


@pytest.fixture
def seal(tmp_path: Path) -> Iterator[Seal]:
    yield from _seal(tmp_path, cooldown_s=0, camera=False)


@pytest.fixture
def cooling_seal(tmp_path: Path) -> Iterator[Seal]:
    yield from _seal(tmp_path, cooldown_s=600, camera=False)


@pytest.fixture
def camera_seal(tmp_path: Path) -> Iterator[Seal]:
    yield from _seal(tmp_path, cooldown_s=0, camera=True)


def _results_for(events: list[Any], seq: int) -> list[dict[str, Any]]:
    return [e.payload for e in events if e.type is EventType.WARNING_RESULT and e.payload["trigger_seq"] == seq]


def test_a_warning_under_way_when_its_intrusion_is_committed_only_by_the_close_gets_its_warning_result(
    seal: Seal,
) -> None:
    """The intrusion, held on a full disk, says ``started``; the agent stops (the warning is cut short), room returns
    and the recorder's close commits the intrusion: its ``warning_result`` (``stopped``) follows and names it."""
    filled = seal.fill()
    seal.pins.pin(PIR).drive_high()
    assert wait_until(lambda: seal.recorder.held == 1, 30), "the intrusion was not held"

    seal.agent.stop()
    seal.disk.make_room()
    seal.recorder.close()

    events = [e for e in seal.events() if e.seq > filled]
    [intrusion] = [e for e in events if e.type is EventType.INTRUSION]
    assert intrusion.payload["warning"] == "started"
    [result] = _results_for(events, intrusion.seq)
    assert (result["trigger"], result["warning"]) == ("intrusion", "stopped"), result
    assert [i["result"] for i in result["warning_languages"]] == ["stopped", "stopped"]
    assert [e.type for e in events] == [EventType.INTRUSION, EventType.WARNING_RESULT]


def test_a_deferred_warning_of_an_intrusion_committed_only_by_the_close_gets_no_outcome(cooling_seal: Seal) -> None:
    """An intrusion within the cool-down (``deferred_cooldown``) held on a full disk; the agent stops before the
    cool-down ends and the close commits the intrusion: no warning was started for it, so no ``warning_result``
    names it (one said ``stopped``, a warning cut short, of a warning that never began: a hostile review)."""
    seal = cooling_seal
    pin = seal.pins.pin(PIR)
    pin.drive_high()
    assert seal.agent.wait_recorded(30)
    pin.drive_low()
    filled = seal.fill()
    pin.drive_high()
    assert wait_until(lambda: seal.recorder.held == 1, 30), "the intrusion was not held"

    seal.agent.stop()
    seal.disk.make_room()
    seal.recorder.close()

    events = [e for e in seal.events() if e.seq > filled]
    [intrusion] = [e for e in events if e.type is EventType.INTRUSION]
    assert intrusion.payload["warning"] == "deferred_cooldown"
    assert _results_for(events, intrusion.seq) == []


def test_triggers_behind_a_hung_intrusion_hook_get_their_follow_ups_and_the_stop_is_bounded(
    camera_seal: Seal,
) -> None:
    """``when_intrusion`` hangs on the first intrusion; two lid openings and a second intrusion come behind it. The
    stop ends in bounded time (the hook is not called again for the second intrusion) and every trigger's
    ``snapshot_taken`` and ``warning_result`` (its warning was under way) is signed, naming it."""
    seal = camera_seal
    start = max(e.seq for e in seal.events())
    hook_calls: list[int] = []
    hook_called, release = threading.Event(), threading.Event()

    def hung(stored: Any) -> None:
        hook_calls.append(stored.seq)
        hook_called.set()
        release.wait(120)

    seal.agent.when_intrusion = hung
    pir, lid = seal.pins.pin(PIR), seal.pins.pin(LID)
    pir.drive_high()
    assert hook_called.wait(30), "when_intrusion was not called"
    pir.drive_low()
    for _ in range(2):
        lid.drive_high()
        lid.drive_low()
    pir.drive_high()
    assert wait_until(lambda: [e.type for e in seal.events()].count(EventType.INTRUSION) == 2, 30)
    assert wait_until(lambda: [e.type for e in seal.events()].count(EventType.TAMPER) == 2, 30)

    began = time.monotonic()
    try:
        seal.agent.stop()
        took = time.monotonic() - began
        assert sum(thread.name == FOLLOW_UP for thread in threading.enumerate()) == 0
    finally:
        release.set()
    assert took < 20, f"the stop took {took:.1f} s"
    events = [e for e in seal.events() if e.seq > start]
    triggers = [e for e in events if e.type in (EventType.INTRUSION, EventType.TAMPER)]
    assert [e.type for e in triggers] == [EventType.INTRUSION, EventType.TAMPER, EventType.TAMPER, EventType.INTRUSION]
    taken = [e.payload["trigger_seq"] for e in events if e.type is EventType.SNAPSHOT_TAKEN]
    assert sorted(taken) == [e.seq for e in triggers]
    for trigger in triggers:
        assert trigger.payload["warning"] == "started", trigger.payload
        [result] = _results_for(events, trigger.seq)
        assert result["warning"] == "stopped", result
    assert hook_calls == [triggers[0].seq]
