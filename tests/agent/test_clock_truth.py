"""What the seal signs about its own clock ("signed means true"): the kernel's sync state (``adjtimex``) in every
heartbeat and ``agent_started``, the kernel's boot id in ``agent_started``, and a ``clock_stepped`` event, in its
place in the chain, when the wall clock jumps against the monotonic clock (a Pi without RTC stepped by NTP)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.clock import STEP_THRESHOLD_S, ClockWatch
from seal_agent.behaviour.seal import SealAgent, SystemClock
from seal_agent.behaviour.warning import WarningSettings
from seal_agent.devices.clock_state import BOOT_ID_PATH, KernelClock
from seal_agent.devices.pir import PirSensor
from seal_agent.interfaces import ClockState, ClockSync
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_dev.broker import PrivateBroker
from seal_protocol import Envelope, decode_envelope, envelope_hash, parse_ts
from seal_protocol.signing import SigningKey, generate_signing_key, verify_envelope
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, wait_until, write_config

DEVICE = "seal-test-1"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _well_typed_clock(clock: object) -> None:
    """``{"synced": bool | null, "max_error_ms": int | null}``, exactly (no bool for the int, null together)."""
    assert isinstance(clock, dict) and set(clock) == {"synced", "max_error_ms"}, clock
    synced, max_error = clock["synced"], clock["max_error_ms"]
    if synced is None:
        assert max_error is None, clock
    else:
        assert type(synced) is bool and type(max_error) is int and max_error >= 0, clock


def test_the_kernel_s_clock_state_is_read_as_it_is_on_this_machine() -> None:
    kernel = KernelClock()
    state = kernel.sync()
    assert isinstance(state, ClockSync)
    if state.synced is None:  # adjtimex could not be called: unknown, and why, never a guess
        assert state.max_error_ms is None and isinstance(state.reason, str) and state.reason, state
    else:
        assert type(state.synced) is bool and type(state.max_error_ms) is int and state.max_error_ms >= 0, state
        assert state.reason is None
    _well_typed_clock(state.payload())
    assert kernel.boot_id == BOOT_ID_PATH.read_text("ascii").strip() and _UUID.fullmatch(kernel.boot_id)


def test_a_boot_id_that_cannot_be_read_is_null(tmp_path: Path) -> None:
    assert KernelClock(boot_id_path=tmp_path / "no-such-file").boot_id is None


def test_a_seal_s_heartbeat_and_agent_started_sign_its_clock_state_and_boot_id(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """The real runtime: the kernel's state, as ``adjtimex`` gives it, and this boot's id."""
    runtime = runtimes(write_config(tmp_path, broker))
    runtime.start()
    runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat") and c.payloads(DEVICE, "agent_started"))
    [started], [beat] = court.payloads(DEVICE, "agent_started"), court.payloads(DEVICE, "heartbeat")
    _well_typed_clock(started["clock"])
    _well_typed_clock(beat["clock"])
    assert started["boot_id"] == BOOT_ID_PATH.read_text("ascii").strip()
    assert "boot_id" not in beat
    kernel = KernelClock().sync()  # the runtime reads the kernel's: known here if adjtimex answers here
    assert (beat["clock"]["synced"] is None) == (started["clock"]["synced"] is None) == (kernel.synced is None)


@dataclass
class FixedClockState:
    """A :class:`ClockState` of our choosing."""

    state: ClockSync
    boot_id: str | None = "3f1c0b7e-6a52-4c1d-9a0e-2b8d7e4f5a61"

    def sync(self) -> ClockSync:
        return self.state


@dataclass
class SteppableClock(SystemClock):
    """The real clocks, the wall clock moved by ``offset`` (a step: NTP, a person setting the time). ``ticks`` counts
    the timer thread's readings of the wall clock, so a test knows the timer has looked since it moved it."""

    offset: timedelta = field(default_factory=timedelta)
    ticks: int = 0
    # The wall clock runs on the monotonic one from the start: the host's own wall clock may itself be stepped while
    # a test runs (NTP, a paused virtual machine: CI once saw 21.7 s), which the seal would rightly call a step too.
    _start: tuple[float, datetime] = field(default_factory=lambda: (time.monotonic(), datetime.now(UTC)))

    def unstepped(self) -> datetime:
        """The wall clock's time had no test moved it."""
        start_mono, start_wall = self._start
        return start_wall + timedelta(seconds=self.monotonic() - start_mono)

    def now(self) -> datetime:
        if threading.current_thread().name == "seal-agent-timer":
            self.ticks += 1
        return self.unstepped() + self.offset


@dataclass
class Seal:
    agent: SealAgent
    outbox: Outbox
    key: SigningKey
    clock: SteppableClock
    pins: MockFactory

    def events(self) -> list[tuple[Envelope, bytes]]:
        return [(decode_envelope(e.data), e.data) for e in self.outbox.pending(limit=1000)]

    def of(self, type: str) -> list[dict[str, Any]]:
        return [envelope.payload for envelope, _ in self.events() if envelope.type.value == type]

    def timer_looked(self) -> bool:
        """The timer has compared the clocks once more, wholly after now (each tick reads the wall clock once, for the
        clocks' comparison; the PIR's level check reads it only when it catches an edge)."""
        since = self.clock.ticks
        return wait_until(lambda: self.clock.ticks >= since + 2, timeout=30)


@pytest.fixture
def make_seal(tmp_path: Path) -> Iterator[Callable[..., Seal]]:
    closers: list[Callable[[], None]] = []

    def make(clock_state: ClockState | None) -> Seal:
        pins, clock, key = MockFactory(), SteppableClock(), generate_signing_key()
        outbox = Outbox(tmp_path / "outbox.sqlite")
        recorder = EventRecorder(
            device_id="seal-a", case_no="(2024)苏0214执1号", signing_key=key, outbox=outbox, clock=clock
        )
        sensor = PirSensor(17, pin_factory=pins)
        agent = SealAgent(
            recorder=recorder,
            motion=sensor,
            speaker=RecordingSpeaker(),
            warning=WarningSettings(repeat_s=600, max_repeats=1, cooldown_s=0),
            heartbeat_s=3600,
            clock=clock,
            clock_state=clock_state,
        )
        closers.extend([pins.reset, outbox.close, sensor.close, agent.stop])
        return Seal(agent, outbox, key, clock, pins)

    yield make
    for close in reversed(closers):
        close()


@pytest.mark.parametrize(
    ("state", "boot_id"),
    [(ClockSync(True, 12), "3f1c0b7e-6a52-4c1d-9a0e-2b8d7e4f5a61"), (ClockSync(False, 16000), None)],
)
def test_the_state_the_seal_is_given_is_the_state_it_signs(
    make_seal: Callable[..., Seal], state: ClockSync, boot_id: str | None
) -> None:
    seal = make_seal(FixedClockState(state, boot_id))
    seal.agent.start()
    seal.agent.heartbeat()
    [started], [beat] = seal.of("agent_started"), seal.of("heartbeat")
    assert started["clock"] == beat["clock"] == {"synced": state.synced, "max_error_ms": state.max_error_ms}
    assert type(beat["clock"]["synced"]) is bool and type(beat["clock"]["max_error_ms"]) is int
    assert started["boot_id"] == boot_id


def test_a_seal_that_cannot_read_its_clock_state_signs_it_unknown_never_synced(make_seal: Callable[..., Seal]) -> None:
    seal = make_seal(None)
    seal.agent.start()
    seal.agent.heartbeat()
    [started], [beat] = seal.of("agent_started"), seal.of("heartbeat")
    assert started["clock"] == beat["clock"] == {"synced": None, "max_error_ms": None}
    assert started["boot_id"] is None


@pytest.mark.parametrize("step", [timedelta(days=3), timedelta(hours=-1)], ids=["forward-3-days", "back-1-hour"])
def test_a_step_of_the_wall_clock_is_a_signed_chained_clock_stepped_event_and_jitter_is_not(
    make_seal: Callable[..., Seal], step: timedelta
) -> None:
    seal = make_seal(FixedClockState(ClockSync(True, 8)))
    seal.agent.start()
    assert seal.timer_looked()
    seal.clock.offset += timedelta(seconds=STEP_THRESHOLD_S / 4)  # 0.5 s: jitter, no step
    assert seal.timer_looked()
    assert seal.of("clock_stepped") == []
    old_clock_event = seal.agent.heartbeat()
    real_now = seal.clock.unstepped()
    seal.clock.offset += step
    assert wait_until(lambda: seal.of("clock_stepped"), timeout=30), "no clock_stepped"
    new_clock_event = seal.agent.heartbeat()
    assert seal.timer_looked()
    [stepped] = seal.of("clock_stepped")  # one step, one event

    step_ms = step // timedelta(milliseconds=1)
    assert type(stepped["step_ms"]) is int and abs(stepped["step_ms"] - step_ms) <= 50, stepped
    assert set(stepped) == {"step_ms", "before", "after", "synced"} and stepped["synced"] is True
    before, after = parse_ts(stepped["before"]), parse_ts(stepped["after"])
    assert abs(before - real_now - timedelta(seconds=0.5)) < timedelta(seconds=5)  # the old clock's time then
    assert abs(after - before - step) < timedelta(milliseconds=50)
    # In the chain: after the events the old clock stamped, before those the new one stamps; signed like any event.
    events = seal.events()
    seqs = {e.type.value: e.seq for e, _ in events if e.type.value == "clock_stepped"}
    assert old_clock_event.seq < seqs["clock_stepped"] < new_clock_event.seq
    for (envelope, data), (following, _) in zip(events, events[1:], strict=False):
        assert following.prev_hash == envelope_hash(data) and following.seq == envelope.seq + 1
    for envelope, _ in events:
        verify_envelope(envelope, seal.key.verify_key)
    stepped_ts = parse_ts(next(e.ts for e, _ in events if e.type.value == "clock_stepped"))
    assert stepped_ts >= after and parse_ts(decode_envelope(new_clock_event.data).ts) >= after


@pytest.mark.parametrize("step", [timedelta(hours=-1), timedelta(hours=1)], ids=["back", "forward"])
def test_an_edge_caught_after_a_step_signs_its_not_before_in_the_clock_of_its_ts(
    make_seal: Callable[..., Seal], step: timedelta
) -> None:
    """The level check kept its last idle reading as wall time: caught after a step back, the intrusion signed a
    ``not_before`` an hour after its own ``ts`` (a hostile review); after a step forward, an hour too early."""
    seal = make_seal(FixedClockState(ClockSync(True, 8)))
    seal.agent.start()
    assert seal.timer_looked()  # the PIR read idle, by the old clock
    seal.pins.pin(17)._change_state(True)  # someone enters; the pin factory loses the edge
    seal.clock.offset += step  # and the clock is set within the same second
    assert wait_until(lambda: seal.of("intrusion"), timeout=30), "no intrusion"
    events = {envelope.type.value: envelope for envelope, _ in seal.events()}
    stepped, intrusion = events["clock_stepped"], events["intrusion"]
    assert stepped.seq < intrusion.seq and intrusion.payload["detected_by"] == "level_check"
    not_before, ts = parse_ts(intrusion.payload["not_before"]), parse_ts(intrusion.ts)
    assert ts - timedelta(seconds=3) <= not_before <= ts, (not_before, ts)  # one reading (~1 s) before, new clock


class _HeldUpClock:
    """A clock whose reader is held up once, ``pause`` seconds, right after it reads the monotonic clock (a collection,
    swapping, another process on a loaded Pi): nobody moved the wall clock."""

    def __init__(self) -> None:
        self.t, self.pause, self.base = 1000.0, 0.0, datetime(2026, 12, 6, tzinfo=UTC)

    def monotonic(self) -> float:
        value, self.t, self.pause = self.t, self.t + self.pause, 0.0
        return value

    def now(self) -> datetime:
        return self.base + timedelta(seconds=self.t - 1000.0)


def test_a_reader_held_up_between_the_two_clocks_is_no_step() -> None:
    """It signed +3000 ms, then -3000 ms at the next check (a hostile review)."""
    clock = _HeldUpClock()
    watch = ClockWatch(clock, None)
    watch.started()
    steps = []
    for pause in (0.0, 3.0, 0.0, 0.0):
        clock.t += 1
        clock.pause = pause
        steps.append(watch.place()[1])
    assert steps == [None] * 4
    clock.base += timedelta(hours=1)  # a real step is still seen
    clock.t += 1
    _anchor, stepped = watch.place()
    assert stepped is not None and stepped["step_ms"] == 3_600_000
