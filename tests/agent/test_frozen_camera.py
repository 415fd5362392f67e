"""Signed means true, of a frozen camera (the same frame again, bit for bit: a hung driver, a covered or paused
source): its events say ``frozen`` at once, not ``ok`` until ``blind_after_s``; its picture is named once, never
again for each repeated frame; a snapshot command does not present it as the view now. Found by a hostile review.
Real parts: a clip of live frames then one frame repeated, played by the video-file camera; the events as the
seal's outbox holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gpiozero.pins.mock import MockFactory

from seal_agent.devices.camera import Snapshot, SnapshotBurst, encode_jpeg
from seal_agent.devices.evidence import Evidence
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore, sha256_hex
from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import decode_envelope
from seal_protocol.commands import CommandAction
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, pulse, write_config
from tests.agent.spool_helpers import recorder_on
from tests.agent.test_camera_agent import camera_section
from tests.agent.test_commands import command, send
from tests.agent_camera.clips import static_frames, write_clip

LIVE = 20  # live frames (sensor noise: each one new), then one frame for 30 s at 10 fps
FROZEN = 300


def frozen_clip(path: Path) -> Path:
    frames: list[np.ndarray] = list(static_frames(LIVE + 1))
    frozen = frames.pop()
    return write_clip(path, [*frames, *[frozen.copy() for _ in range(FROZEN)]])


def frozen_runtime(tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, into_freeze: int) -> SealRuntime:
    """A started seal whose camera has given ``into_freeze`` frames of its freeze (not yet ``blind_after_s``)."""
    section = camera_section(
        frozen_clip(tmp_path / "frozen.avi"),
        blind_after_s=60.0,
        lost_after_s=60.0,
        ring_seconds=3.0,
        snapshot_before_s=2.0,
        snapshot_after_s=1.0,
        snapshot_max_frames=6,
    )
    runtime = runtimes(write_config(tmp_path, broker, camera=section), speaker=RecordingSpeaker())
    runtime.start()
    assert runtime.camera is not None
    monitor = runtime.camera.monitor
    assert monitor.wait_for_observations(LIVE + into_freeze, 30), monitor.observations
    return runtime


def outbox_payloads(runtime: SealRuntime, type: str) -> list[dict[str, Any]]:
    events = [decode_envelope(item.data) for item in runtime.outbox.pending(limit=100_000)]
    return [event.payload for event in events if event.type.value == type]


def test_an_intrusion_during_a_freeze_says_frozen_and_names_its_picture_once(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    runtime = frozen_runtime(tmp_path, broker, runtimes, into_freeze=5)
    pulse(mock_pins)
    assert runtime.agent.wait_recorded(30, follow_ups=True)

    (intrusion,) = outbox_payloads(runtime, "intrusion")
    (taken,) = outbox_payloads(runtime, "snapshot_taken")
    assert intrusion["camera"] == "frozen", intrusion  # the freeze is 30 s long: the seal never says "ok" in it
    named = [*intrusion["snapshots"], *taken["snapshots"]]
    assert len(named) == len(set(named)), named  # no picture twice, in one event or across the two
    assert taken["snapshots"] == [] and taken["not_stored"] == []  # after the trigger: the same frame, no new view


def test_a_snapshot_command_during_a_freeze_takes_no_frame_as_the_view_now(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    runtime = frozen_runtime(tmp_path, broker, runtimes, into_freeze=10)  # 1 s frozen: more than fresh_s (0.5 s)
    assert runtime.publisher.wait_listening(30)
    kind, answer = send(court, command(1, CommandAction.SNAPSHOT))
    assert kind == "command_ack", answer
    assert (answer["result"], answer["snapshot"], answer["frame_age_ms"]) == ("no_frame", None, None), answer
    assert answer["camera"] == "frozen", answer


def test_a_trigger_names_a_picture_once_even_when_it_comes_back(tmp_path: Path) -> None:
    """A driver that hands two stale buffers by turns (A B A B …) repeats no frame just before it, yet its pictures
    are the same JPEGs again: the trigger's events name each once."""
    a, b = (encode_jpeg(frame, 80) for frame in static_frames(2, seed=3))
    with Outbox(tmp_path / "outbox.db") as outbox:
        spool = SnapshotSpool(SnapshotStore(tmp_path / "snapshots", quota_bytes=100 * 2**20), recorder_on(outbox))
        evidence = Evidence(spool)
        burst = SnapshotBurst(0.0, [Snapshot(t, t, j) for t, j in enumerate([a, b, a])], deadline=9.0, max_later=3)
        evidence.attach(burst)
        for t, jpeg in enumerate([b, a, b], start=4):
            evidence.on_later(Snapshot(t, t, jpeg))
        assert evidence.hashes == [sha256_hex(a), sha256_hex(b)] and evidence.wait_later() == []
        assert evidence.keep() == []
