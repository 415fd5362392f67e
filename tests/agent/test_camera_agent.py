"""The camera wired into the agent: snapshots by hash through the durable outbox, motion confirmation, camera health
events, the disk quota. Real parts: clips written by cv2.VideoWriter and played by the video-file camera, gpiozero
mock pins, a private Mosquitto."""

from __future__ import annotations

import hashlib
import math
import os
import time
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import SealStatus
from tests.agent.helpers import (
    CourtSubscriber,
    RecordingSpeaker,
    RuntimeFactory,
    check_chain,
    pulse,
    verify_key,
    write_config,
)
from tests.agent_camera.clips import black_frames, moving_rectangle_frames, static_frames, write_clip

DEVICE = "seal-test-1"


def camera_section(source: Path, **overrides: object) -> str:
    options: dict[str, object] = {
        "fps": 10.0,
        "ring_seconds": 1.0,
        "blind_after_s": 0.5,
        "lost_after_s": 0.5,
        "motion_learning_frames": 3,
        "snapshot_before_s": 0.5,
        "snapshot_after_s": 1.0,
        "snapshot_max_frames": 4,
        "motion_window_s": 0.5,
    }
    options.update(overrides)
    lines = [f'source = "{source}"'] + [f"{key} = {str(value).lower()}" for key, value in options.items()]
    return "[camera]\n" + "\n".join(lines)


def started(runtime: SealRuntime) -> SealRuntime:
    """Start and wait until the camera delivers analysed frames (the background is learned)."""
    runtime.start()
    assert runtime.camera is not None
    monitor = runtime.camera.monitor
    assert monitor.wait_for_state("ok", 30), monitor.state
    assert monitor.wait_for_observations(8, 30), monitor.observations
    return runtime


def new_frames_after(runtime: SealRuntime, count: int = 3) -> None:
    """Wait until the camera has analysed ``count`` more frames (so that the next trigger has new ones)."""
    assert runtime.camera is not None
    monitor = runtime.camera.monitor
    assert monitor.wait_for_observations(monitor.observations + count, 30), monitor.observations


def test_intrusion_snapshots_arrive_by_hash_first_one_at_once(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    # 5 fps and 8 snapshots: 4 from the ring buffer, 4 taken over the 0.8 s after the trigger.
    config = write_config(tmp_path, broker, camera=camera_section(video, fps=5.0, snapshot_max_frames=8))
    speaker = RecordingSpeaker()
    runtime = started(runtimes(config, speaker=speaker))

    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "intrusion"), timeout=30)
    intrusion = court.payloads(DEVICE, "intrusion")[0]
    assert intrusion["warning"] == "played" and speaker.plays == 1
    assert intrusion["camera"] == "ok" and intrusion["camera_motion"] == "seen"
    ready = intrusion["snapshots"]
    assert ready, "no pre-trigger snapshot from the ring buffer"

    # The post-trigger snapshots are listed in a follow-up event naming the intrusion.
    def follow_up(c: CourtSubscriber) -> list[dict[str, object]]:
        return list(c.payloads(DEVICE, "snapshot_taken"))

    assert court.wait_for(lambda c: bool(follow_up(c)), timeout=30)
    later = follow_up(court)[0]
    assert later["trigger"] == "intrusion" and later["trigger_seq"] == 2
    assert isinstance(later["snapshots"], list) and later["snapshots"]
    every = set(ready) | set(later["snapshots"])
    assert court.wait_for(lambda c: every <= c.snapshot_hashes(DEVICE), timeout=30)

    arrivals = sorted(court.snapshots, key=lambda s: s.at)
    for item in arrivals:
        assert hashlib.sha256(item.data).hexdigest() == item.sha  # bytes == topic level
        assert item.data.startswith(b"\xff\xd8")
    # The first snapshot out is one of those taken before the trigger, and it is out before the follow-up event
    # (which waits for the post-trigger window).
    assert arrivals[0].sha in ready
    assert court.arrivals.index(f"snapshot:{arrivals[0].sha}") < court.arrivals.index("event:snapshot_taken")
    assert set(later["snapshots"]) - set(ready)  # and later ones were taken after the trigger
    check_chain(court.of(DEVICE), verify_key(config))
    assert runtime.delivery.snapshots is not None and runtime.delivery.snapshots.wait_drained(30)
    assert runtime.outbox.snapshot_depth() == 0  # deleted from the queue on the court's receipt
    assert all(sha in runtime.camera.spool.store for sha in every)  # type: ignore[union-attr]


def test_intrusion_is_committed_without_waiting_for_the_camera(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """The event is committed with the verdict the camera can give at the edge; the verdict over the whole motion
    window (which needs frames from after the edge) comes in the ``snapshot_taken`` follow-up."""
    video = write_clip(tmp_path / "still.avi", static_frames(100))
    window = 8.0  # longer than a loaded machine takes to commit: a commit that waited for it would see its frames
    config = write_config(tmp_path, broker, camera=camera_section(video, motion_window_s=window))
    runtime = started(runtimes(config))
    assert runtime.camera is not None
    monitor = runtime.camera.monitor
    after_window: list[str] = []
    # Right after the commit: has the camera analysed any frame from the end of the window on?
    runtime.agent.when_intrusion = lambda stored: after_window.append(
        monitor.motion_verdict(edge + window, math.inf).value
    )
    edge = time.monotonic()  # at most the handler's own "now"
    pulse(mock_pins)
    assert runtime.agent.wait_recorded(30)
    assert after_window == ["unknown"]  # committed before any such frame existed
    assert court.wait_for(lambda c: c.payloads(DEVICE, "snapshot_taken"), timeout=30)
    intrusion = court.payloads(DEVICE, "intrusion")[0]
    assert intrusion["warning"] == "played" and intrusion["camera_motion"] == "not_seen" and intrusion["snapshots"]
    follow_up = court.payloads(DEVICE, "snapshot_taken")[0]
    assert follow_up["camera_motion"] == "not_seen" and "warning" not in follow_up
    types = court.types(DEVICE)
    assert types.index("intrusion") < types.index("snapshot_taken")


def test_tamper_right_after_an_intrusion_warns_on_its_edge_and_events_keep_the_edges_order(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    config = write_config(tmp_path, broker, tamper=True, camera=camera_section(video))
    speaker = RecordingSpeaker()
    runtime = runtimes(config, speaker=speaker)
    mock_pins.pin(27).drive_low()  # lid shut
    started(runtime)
    pulse(mock_pins)
    mock_pins.pin(27).drive_high()  # the lid is forced open at once
    assert speaker.plays == 2  # both warnings started on their edges, before the handlers returned
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "snapshot_taken")) == 2, timeout=30)
    types = court.types(DEVICE)
    assert types.index("intrusion") < types.index("tamper")
    follow_ups = {p["trigger"]: p for p in court.payloads(DEVICE, "snapshot_taken")}
    seqs = {r.envelope.type.value: r.envelope.seq for r in court.of(DEVICE)}
    assert follow_ups["intrusion"]["trigger_seq"] == seqs["intrusion"]
    assert follow_ups["tamper"]["trigger_seq"] == seqs["tamper"]
    check_chain(court.of(DEVICE), verify_key(config))


def test_unsent_snapshots_survive_a_restart(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    config = write_config(tmp_path, broker, camera=camera_section(video, snapshot_after_s=0.0))
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        first = started(runtimes(config))
        broker.stop()
        pulse(mock_pins)
        assert first.agent.wait_recorded(30)
        first.close()  # waits for the trigger's follow-up, which stores and queues its snapshots
        broker.start()
        second = runtimes(config)
        second.start()
        assert court.wait_for(lambda c: c.payloads(DEVICE, "intrusion"), timeout=30)
        listed = set(court.payloads(DEVICE, "intrusion")[0]["snapshots"])
        assert listed, "the intrusion listed no snapshot"
        assert court.wait_for(lambda c: listed <= c.snapshot_hashes(DEVICE), timeout=30)
    finally:
        court.close()


def test_covered_lens_is_camera_blind_and_comes_back(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    video = write_clip(tmp_path / "covered.avi", black_frames(40))
    config = write_config(tmp_path, broker, camera=camera_section(video))
    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: "camera_blind" in c.types(DEVICE), timeout=30)
    blind = court.payloads(DEVICE, "camera_blind")[0]
    assert blind["reason"] == "uniform"
    check_chain(court.of(DEVICE), verify_key(config))


def test_lost_camera_never_stops_the_warning_or_the_event(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "short.avi", static_frames(5))  # 0.5 s: the camera reopens the file often
    config = write_config(
        tmp_path, broker, camera=camera_section(video, require_motion_confirmation=True, lost_after_s=0.5)
    )
    speaker = RecordingSpeaker()
    runtime = started(runtimes(config, speaker=speaker))
    video.unlink()  # the camera is unplugged
    assert court.wait_for(lambda c: "camera_lost" in c.types(DEVICE), timeout=30)
    assert runtime.agent.camera_state == "lost"

    pulse(mock_pins)
    assert speaker.wait_plays(1, timeout=30)  # confirmation is required, but a lost camera never silences
    assert court.wait_for(lambda c: c.payloads(DEVICE, "snapshot_taken"), timeout=30)
    intrusion = court.payloads(DEVICE, "intrusion")[0]
    assert intrusion["camera"] == "lost" and intrusion["camera_motion"] == "unknown"
    assert intrusion["warning"] == "pending_confirmation"  # committed without waiting for the camera
    follow_up = court.payloads(DEVICE, "snapshot_taken")[0]
    assert follow_up["camera_motion"] == "unknown" and follow_up["warning"] == "played"

    write_clip(video, static_frames(20))  # plugged in again
    assert court.wait_for(lambda c: "camera_found" in c.types(DEVICE), timeout=30)


def test_motion_confirmation_with_a_still_room_records_not_seen_and_stays_silent(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "still.avi", static_frames(100))
    config = write_config(tmp_path, broker, camera=camera_section(video, require_motion_confirmation=True))
    speaker = RecordingSpeaker()
    started(runtimes(config, speaker=speaker))
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "snapshot_taken"), timeout=30)
    intrusion = court.payloads(DEVICE, "intrusion")[0]
    assert intrusion["camera_motion"] == "not_seen"  # frames before the edge
    assert intrusion["warning"] == "pending_confirmation"
    assert intrusion["snapshots"]  # the evidence is kept all the same
    follow_up = court.payloads(DEVICE, "snapshot_taken")[0]
    intrusion_seq = next(r.envelope.seq for r in court.of(DEVICE) if r.envelope.type.value == "intrusion")
    assert follow_up["trigger"] == "intrusion" and follow_up["trigger_seq"] == intrusion_seq
    assert follow_up["camera_motion"] == "not_seen"  # frames before and after the edge
    assert follow_up["warning"] == "suppressed_not_seen"
    assert speaker.plays == 0


def test_quota_thins_oldest_snapshots_and_says_so_without_losing_events(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    section = camera_section(video, snapshot_quota_mb=0.05, snapshot_after_s=0.0, snapshot_max_frames=4)
    config = write_config(tmp_path, broker, cooldown_s=0, camera=section)
    runtime = started(runtimes(config))
    assert runtime.camera is not None
    store = runtime.camera.spool.store
    for _ in range(6):
        pulse(mock_pins)
        new_frames_after(runtime)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "outbox_full"), timeout=30)
    full = court.payloads(DEVICE, "outbox_full")[0]
    assert full["quota_bytes"] == store.quota_bytes
    assert full["thinned"] >= 1 and full["snapshots"]
    assert full["stored_bytes"] <= store.quota_bytes
    assert store.total_bytes() <= store.quota_bytes
    assert not any(sha in store for sha in full["snapshots"])  # the oldest went
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 6)
    seqs = check_chain(court.of(DEVICE), verify_key(config))
    assert sorted(seqs) == list(range(1, max(seqs) + 1))  # no event lost


def test_uncovered_lens_is_camera_recovered(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> None:
    """A covered lens (a black clip) is ``camera_blind``; the cover taken off (the clip replaced by a normal room, which
    the looping video camera opens at its next loop) is ``camera_recovered``, and the heartbeat says ``ok``."""
    video = write_clip(tmp_path / "camera.avi", black_frames(10))  # 1 s per loop at 10 fps
    config = write_config(tmp_path, broker, camera=camera_section(video))
    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: "camera_blind" in c.types(DEVICE), timeout=30)
    assert runtime.agent.camera_state == "blind"
    assert "camera_recovered" not in court.types(DEVICE)

    os.replace(write_clip(tmp_path / "room.avi", static_frames(50)), video)  # the cover is taken off
    assert court.wait_for(lambda c: "camera_recovered" in c.types(DEVICE), timeout=30)
    recovered = court.payloads(DEVICE, "camera_recovered")[0]
    assert isinstance(recovered["down_ms"], int) and recovered["down_ms"] >= 500  # blind_after_s = 0.5
    assert runtime.agent.camera_state == "ok"
    types = court.types(DEVICE)
    assert types.index("camera_blind") < types.index("camera_recovered")
    runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat"))
    assert court.payloads(DEVICE, "heartbeat")[-1]["camera"] == "ok"
    check_chain(court.of(DEVICE), verify_key(config))


def test_quota_thins_unsent_snapshots_when_sent_ones_do_not_suffice_and_names_them(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """The quota rule's second pass: with the broker down nothing has been sent, so the oldest *unsent* snapshots
    go. Each is named in an ``outbox_full`` event's ``unsent_lost``, leaves the send queue and never arrives; every
    other snapshot an intrusion listed does arrive, and no event seq is lost."""
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    section = camera_section(video, snapshot_quota_mb=0.05, snapshot_after_s=0.0, snapshot_max_frames=4)
    config = write_config(tmp_path, broker, cooldown_s=0, camera=section)
    court = CourtSubscriber(broker, persistent=True).start()
    try:
        runtime = started(runtimes(config))
        assert runtime.camera is not None
        store = runtime.camera.spool.store
        assert court.wait_for(lambda c: c.last_status(DEVICE) is SealStatus.ONLINE)
        broker.stop()  # from now on nothing is sent: every snapshot stays unsent
        for _ in range(6):
            pulse(mock_pins)
            new_frames_after(runtime)
        assert runtime.agent.wait_recorded(30, follow_ups=True)  # every snapshot stored, every thinning recorded
        queued = runtime.outbox.queued_snapshots()
        assert store.total_bytes() <= store.quota_bytes
        broker.start()

        def lost_ones(c: CourtSubscriber) -> list[str]:
            return [sha for payload in c.payloads(DEVICE, "outbox_full") for sha in payload["unsent_lost"]]

        # Each follow-up (snapshot_taken) is recorded after its trigger's snapshots were stored and thinned.
        assert court.wait_for(lambda c: len(c.payloads(DEVICE, "snapshot_taken")) == 6, timeout=30)
        assert len(court.payloads(DEVICE, "intrusion")) == 6
        assert lost_ones(court)
        lost = set(lost_ones(court))
        for payload in court.payloads(DEVICE, "outbox_full"):
            assert payload["thinned_unsent"] == len(payload["unsent_lost"])
            assert payload["stored_bytes"] <= store.quota_bytes
        assert not lost & queued  # out of the send queue as soon as they were thinned
        assert not any(sha in store for sha in lost)

        listed = {sha for payload in court.payloads(DEVICE, "intrusion") for sha in payload["snapshots"]}
        assert lost <= listed
        assert court.wait_for(lambda c: listed - lost <= c.snapshot_hashes(DEVICE), timeout=30)
        assert runtime.delivery.snapshots is not None and runtime.delivery.snapshots.wait_drained(30)
        assert not lost & court.snapshot_hashes(DEVICE)  # a lost snapshot is never sent
        seqs = check_chain(court.of(DEVICE), verify_key(config))
        assert sorted(seqs) == list(range(1, max(seqs) + 1))  # no event lost
    finally:
        court.close()


def test_frames_that_cannot_fit_the_snapshot_limit_are_neither_queued_nor_listed(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    config = write_config(tmp_path, broker, camera=camera_section(video))
    runtime = started(runtimes(config))
    assert runtime.camera is not None
    runtime.camera.monitor.max_snapshot_bytes = 100  # no frame of the clip fits, even shrunk to 16 px

    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "intrusion"), timeout=30)
    assert court.payloads(DEVICE, "intrusion")[0]["snapshots"] == []  # the event lists only stored snapshots
    assert runtime.agent.wait_recorded(30, follow_ups=True)
    assert all(p["snapshots"] == [] for p in court.payloads(DEVICE, "snapshot_taken"))
    assert runtime.camera.spool.store.hashes() == [] and runtime.outbox.snapshot_depth() == 0
