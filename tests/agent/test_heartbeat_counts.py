"""What the heartbeat and ``agent_started`` count: the events waiting besides themselves, the held ones included."""

from __future__ import annotations

from pathlib import Path

from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, decode_envelope
from tests.agent.full_disk import FullDisk
from tests.agent.helpers import RuntimeFactory, write_config


def test_a_heartbeat_counts_the_held_events_it_commits_ahead_of_itself(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker))  # not connected: nothing is receipted meanwhile
    disk = FullDisk(runtime.recorder)
    disk.fill()
    for _ in range(5):  # camera health events while the disk is full: held in memory with their time
        runtime.recorder.record_or_hold(EventType.CAMERA_LOST, {"reason": "read_failed", "since": None})
    assert runtime.recorder.held == 5
    disk.make_room()
    before = runtime.outbox.depth()
    beat = decode_envelope(runtime.agent.heartbeat().data)
    assert runtime.recorder.held == 0
    assert runtime.outbox.depth() == before + 5 + 1
    assert beat.payload["outbox_depth"] == before + 5  # all that waits besides itself


def test_agent_started_held_on_a_full_disk_counts_what_waits_when_it_is_committed(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker))
    disk = FullDisk(runtime.recorder)
    disk.fill()
    runtime.recorder.record_or_hold(EventType.CAMERA_LOST, {"reason": "read_failed", "since": None})
    runtime.start()  # agent_started is held behind the camera's event
    assert runtime.recorder.held == 2
    disk.make_room()
    before = runtime.outbox.depth()
    runtime.agent.heartbeat()
    events = [decode_envelope(stored.data) for stored in runtime.outbox.pending(limit=10_000)]
    started = [event for event in events if event.type is EventType.AGENT_STARTED]
    assert len(started) == 1
    assert started[0].payload["outbox_depth"] == before + 1  # the camera's event committed ahead of it
