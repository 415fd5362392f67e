"""A full disk while someone is at the seal: the outbox refuses the trigger's event (SQLite's own ``SQLITE_FULL``, the
database filled to its size by :class:`~tests.agent.full_disk.FullDisk`). The event is evidence: it must be committed
and sent once the disk has room again, with the time of the trigger, never dropped after a log line, and no
``event_lost`` stands in for it. The court receipts nothing while the disk is full: its receipts would make room."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_dev.broker import PrivateBroker
from seal_protocol import parse_ts
from tests.agent.full_disk import FullDisk, OutboxFailures
from tests.agent.helpers import (
    CourtSubscriber,
    RecordingSpeaker,
    RuntimeFactory,
    check_chain,
    pulse,
    verify_key,
    wait_until,
    write_config,
)
from tests.agent.test_camera_agent import camera_section
from tests.agent_camera.clips import black_frames, write_clip

DEVICE = "seal-test-1"


@contextmanager
def _intrusion_on_a_full_disk(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> Iterator[tuple[Path, FullDisk, OutboxFailures]]:
    """A running seal whose court does not receipt, its outbox's disk full, and a presence its worker must retry:
    the seal's config, the disk, and the count of the outbox's refusals logged."""
    config = write_config(tmp_path, broker)
    failures = OutboxFailures()
    logging.getLogger("seal_agent").addHandler(failures)
    try:
        runtime = runtimes(config)
        runtime.start()
        assert runtime.publisher.wait_listening(30)
        court.receipting = False
        disk = FullDisk(runtime.recorder)
        disk.fill()
        pulse(mock_pins)
        yield config, disk, failures
    finally:
        logging.getLogger("seal_agent").removeHandler(failures)


def test_an_intrusion_refused_by_a_full_disk_is_committed_and_sent_once_there_is_room(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    with _intrusion_on_a_full_disk(tmp_path, broker, court, runtimes, mock_pins) as (config, disk, failures):
        assert failures.wait(2, timeout=10), "the seal did not try again to commit the intrusion"
        assert not court.payloads(DEVICE, "intrusion")
        held_at = datetime.now(UTC)
        disk.make_room()
        court.receipting = True

        assert court.wait_for(lambda c: bool(c.payloads(DEVICE, "intrusion")), timeout=15), "the intrusion was lost"
        intrusions = [r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "intrusion"]
        assert len(intrusions) == 1
        started = next(r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "agent_started")
        # Signed with the time of the edge, not of the later commit (after the room was made).
        assert parse_ts(started.ts) <= parse_ts(intrusions[0].ts) <= held_at
        assert "event_lost" not in court.types(DEVICE)
        check_chain(court.of(DEVICE), verify_key(config))


def test_a_camera_health_event_refused_by_a_full_disk_is_committed_once_there_is_room(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """``camera_blind`` comes from the camera's own thread, which must not wait for the disk: the event is held in
    memory and committed, with its own time, before the next event (a heartbeat)."""
    video = write_clip(tmp_path / "covered.avi", black_frames(40))
    config = write_config(tmp_path, broker, camera=camera_section(video), heartbeat_s=1)
    runtime = runtimes(config)  # the outbox exists from here on
    court.receipting = False
    disk = FullDisk(runtime.recorder)
    disk.fill()
    runtime.start()  # agent_started is held: the first event held
    # The second: the camera's report of the covered lens (heartbeats are not held: the timer tries each once).
    assert wait_until(lambda: runtime.recorder.held >= 2, timeout=10), "the camera never reported the covered lens"
    held_at = datetime.now(UTC)
    disk.make_room()
    court.receipting = True

    assert court.wait_for(lambda c: "camera_blind" in c.types(DEVICE), timeout=10), "camera_blind was lost"
    assert court.payloads(DEVICE, "camera_blind")[0]["reason"] == "uniform"
    blind = next(r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "camera_blind")
    assert parse_ts(blind.ts) <= held_at  # the time it was seen, not the time of the later commit
    assert "event_lost" not in court.types(DEVICE)
    check_chain(court.of(DEVICE), verify_key(config))


def test_a_seal_started_on_a_full_disk_still_warns_and_its_events_follow_once_there_is_room(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    court.receipting = False
    disk = FullDisk(runtime.recorder)
    disk.fill()
    runtime.start()  # agent_started cannot be committed: the seal runs anyway
    assert runtime.publisher.wait_listening(30)
    pulse(mock_pins)
    assert speaker.wait_plays(1), "a seal started on a full disk does not warn"
    disk.make_room()
    court.receipting = True

    def after_the_fill(c: CourtSubscriber) -> list[str]:
        return [r.envelope.type.value for r in c.of(DEVICE) if r.envelope.seq > len(disk.fillers)]

    assert court.wait_for(lambda c: after_the_fill(c) == ["agent_started", "intrusion"], timeout=15), court.types(
        DEVICE
    )
    check_chain(court.of(DEVICE), verify_key(config))


def test_an_intrusion_queued_behind_one_refused_by_a_full_disk_is_signed_with_the_time_of_its_edge(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """The trigger worker retries the first intrusion while the disk is full; the second waits behind it. Its ``ts``
    is when the PIR saw it (its edge), not when the worker got to it after the disk had room; ``seq`` keeps the order
    of the commits (the edges' order)."""
    with _intrusion_on_a_full_disk(tmp_path, broker, court, runtimes, mock_pins) as (config, disk, failures):
        assert failures.wait(2, timeout=30), "the seal did not try again to commit the first intrusion"
        before_edge = datetime.now(UTC)
        pulse(mock_pins)  # a second presence, queued behind the first
        after_edge = datetime.now(UTC)
        assert failures.wait(4, timeout=30)  # the first still refused: seconds pass before the second is committed
        disk.make_room()
        court.receipting = True

        assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 2, timeout=30), court.types(DEVICE)
        first, second = (r.envelope for r in court.of(DEVICE) if r.envelope.type.value == "intrusion")
        assert first.seq < second.seq
        assert parse_ts(first.ts) <= before_edge
        # ts carries milliseconds: the edge's time, cut to them
        assert before_edge.replace(microsecond=before_edge.microsecond // 1000 * 1000) <= parse_ts(second.ts)
        assert parse_ts(second.ts) <= after_edge, f"signed {parse_ts(second.ts) - after_edge} after its edge"
        check_chain(court.of(DEVICE), verify_key(config))


def test_a_heartbeat_due_on_a_full_disk_is_skipped_and_says_so(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A heartbeat is the seal's state when it is committed: one falling due while the disk is full is skipped, not
    held, and the log says so (not a timer failure); the next one after the disk has room is committed."""
    config = write_config(tmp_path, broker, heartbeat_s=1)
    runtime = runtimes(config)
    runtime.start()
    assert runtime.publisher.wait_listening(30)
    court.receipting = False
    disk = FullDisk(runtime.recorder)
    with caplog.at_level(logging.WARNING, logger="seal_agent"):
        disk.fill()
        assert wait_until(lambda: "heartbeat skipped" in caplog.text, timeout=30), caplog.text
    assert "timer handler failed" not in caplog.text
    assert runtime.recorder.held == 0  # nothing kept in memory for it

    def beats(c: CourtSubscriber) -> int:  # the timer's, not the empty ones that filled the disk
        return len([payload for payload in c.payloads(DEVICE, "heartbeat") if payload])

    beats_before = beats(court)
    disk.make_room()
    court.receipting = True
    assert court.wait_for(lambda c: beats(c) > beats_before, timeout=30)
    check_chain(court.of(DEVICE), verify_key(config))
