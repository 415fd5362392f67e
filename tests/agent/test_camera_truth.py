"""Signed means true, of the camera: no event names a picture as stored that the seal could not store, no snapshot
ack presents a frame from before the camera was lost as the view now, and a configured camera the seal cannot use is
signed ``unavailable``, never ``none`` (the value of a seal built without one). Found by a hostile review."""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.config import load_config
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, decode_envelope
from seal_protocol.commands import CommandAction
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, pulse, write_config
from tests.agent.test_camera_agent import camera_section, started
from tests.agent.test_commands import command, send
from tests.agent_camera.clips import moving_rectangle_frames, write_clip

DEVICE = "seal-test-1"
ENOSPC = "ENOSPC: No space left on device"


class FullSnapshotDisk:
    """The snapshot partition is full: every ``fsync`` of a file under ``directory`` fails with ``ENOSPC``, as a
    full disk answers a write at the latest when it is flushed (other files, the outbox's among them, are spared)."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.directory = directory.resolve()
        self.refused = 0
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if Path(os.readlink(f"/proc/self/fd/{fd}")).is_relative_to(self.directory):
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)


@pytest.fixture
def video(tmp_path: Path) -> Iterator[Path]:
    yield write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))


def test_an_intrusion_whose_pictures_could_not_be_stored_is_followed_by_their_names_and_why(
    tmp_path: Path,
    video: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, broker, camera=camera_section(video, snapshot_max_frames=8))
    runtime = started(runtimes(config))
    assert runtime.camera is not None
    disk = FullSnapshotDisk(runtime.camera.spool.store.directory, monkeypatch)
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "snapshot_taken"), timeout=30)
    [intrusion] = court.payloads(DEVICE, "intrusion")
    [follow] = court.payloads(DEVICE, "snapshot_taken")
    named = intrusion["snapshots"]
    assert named and disk.refused >= len(named)
    assert not any(sha in runtime.camera.spool.store for sha in named)
    # The intrusion was signed before its pictures were stored: its follow-up names each one not stored, and why.
    assert follow["not_stored"][: len(named)] == [{"sha256": sha, "reason": ENOSPC} for sha in named]
    assert follow["snapshots"] == []  # the later ones could not be stored either, and are not listed as stored:
    later = follow["not_stored"][len(named) :]  # they are named not stored after the trigger's, with the reason
    assert later and all(item["reason"] == ENOSPC and item["sha256"] not in named for item in later)


def test_every_picture_an_intrusion_names_is_stored_or_named_not_stored(
    tmp_path: Path,
    video: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    config = write_config(tmp_path, broker, camera=camera_section(video, snapshot_max_frames=8))
    runtime = started(runtimes(config))
    assert runtime.camera is not None
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "snapshot_taken"), timeout=30)
    [intrusion] = court.payloads(DEVICE, "intrusion")
    [follow] = court.payloads(DEVICE, "snapshot_taken")
    assert intrusion["snapshots"] and follow["not_stored"] == []
    assert all(sha in runtime.camera.spool.store for sha in intrusion["snapshots"])


def test_the_snapshot_ack_says_store_failed_when_the_frame_could_not_be_stored(
    tmp_path: Path,
    video: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, broker, camera=camera_section(video))
    runtime = started(runtimes(config))
    assert runtime.camera is not None and runtime.publisher.wait_listening(30)
    FullSnapshotDisk(runtime.camera.spool.store.directory, monkeypatch)
    kind, answer = send(court, command(1, CommandAction.SNAPSHOT))
    assert kind == "command_ack"
    assert (answer["result"], answer["snapshot"], answer["reason"]) == ("store_failed", None, ENOSPC), answer
    assert answer["camera"] == "ok" and isinstance(answer["frame_age_ms"], int)


def test_the_snapshot_ack_signs_how_old_its_frame_is_and_the_camera_state(
    tmp_path: Path, video: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    config = write_config(tmp_path, broker, camera=camera_section(video))
    runtime = started(runtimes(config))
    assert runtime.camera is not None and runtime.publisher.wait_listening(30)
    kind, answer = send(court, command(1, CommandAction.SNAPSHOT))
    assert kind == "command_ack" and answer["result"] == "taken" and answer["camera"] == "ok", answer
    assert 0 <= answer["frame_age_ms"] <= runtime.camera.monitor.fresh_s * 1000  # type: ignore[operator]
    assert court.wait_for(lambda c: answer["snapshot"] in c.snapshot_hashes(DEVICE), timeout=30)


def test_the_snapshot_ack_takes_no_frame_from_before_the_camera_was_lost(
    tmp_path: Path, video: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    config = write_config(tmp_path, broker, camera=camera_section(video))
    runtime = started(runtimes(config))
    assert runtime.camera is not None
    monitor = runtime.camera.monitor
    video.unlink()  # the camera is unplugged (the video-file camera fails as a device would)
    assert monitor.wait_for_state("lost", 30)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "camera_lost"), timeout=30)
    time.sleep(1.0)  # frames from before the loss are still in the ring buffer (it is trimmed only by new frames)
    assert monitor._ring.latest() is not None
    snapshot = command(1, CommandAction.SNAPSHOT)
    kind, answer = send(court, snapshot)
    assert kind == "command_ack"
    assert answer == {
        "command_id": 1,
        "action": "snapshot",
        "result": "camera_lost",
        "snapshot": None,
        "camera": "lost",
        "frame_age_ms": None,
        "sha256": hashlib.sha256(snapshot).hexdigest(),
    }
    assert monitor.latest_snapshot() is None


def test_a_configured_camera_the_seal_cannot_use_is_signed_unavailable_with_the_reason(
    tmp_path: Path,
    video: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    config = write_config(tmp_path, broker, camera=camera_section(video))
    state = load_config(config).state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / "snapshots").write_text("")  # the snapshot directory cannot be made (a file in its way, a bad mount)
    runtime = runtimes(config)
    assert runtime.camera is None
    beat = decode_envelope(runtime.agent.heartbeat().data).payload
    assert beat["camera"] == "unavailable"
    assert beat["camera_reason"].startswith("snapshot store: EEXIST"), beat
    runtime.start()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "agent_started"), timeout=30)
    [began] = court.payloads(DEVICE, "agent_started")
    assert (began["camera"], began["camera_reason"]) == ("unavailable", beat["camera_reason"])
    kind, answer = send(court, command(1, CommandAction.SNAPSHOT))
    assert kind == "command_ack" and (answer["result"], answer["camera"]) == ("camera_unavailable", "unavailable")
    pulse(mock_pins)
    assert runtime.agent.wait_recorded(30)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "intrusion"), timeout=30)
    assert court.payloads(DEVICE, "intrusion")[0]["camera"] == "unavailable"
    assert EventType.SNAPSHOT_TAKEN.value not in court.types(DEVICE)  # no camera: no follow-up


def test_a_seal_without_a_camera_still_signs_none(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory
) -> None:
    runtime = runtimes(write_config(tmp_path, broker))
    beat = decode_envelope(runtime.agent.heartbeat().data).payload
    assert beat["camera"] == "none" and "camera_reason" not in beat
