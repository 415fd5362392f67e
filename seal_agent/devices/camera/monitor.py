"""The camera monitor: grabs frames on its own threads, watches motion and health, serves snapshots."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from seal_protocol.topics import MAX_SNAPSHOT_BYTES

from .base import Camera, Frame, Image, Snapshot
from .burst import SnapshotBurst, SnapshotCallback, snapshots_spread
from .config import CameraConfig
from .errors import FrameNotEncodable
from .grabber import FrameGrabber
from .health import CAMERA_FOUND, HealthEvent, HealthTracker, blind_reason, repeats
from .motion import MotionDetector, encode_jpeg_within
from .ring import FrameRing
from .throttle import ThrottledWarning

logger = logging.getLogger(__name__)

#: ``on_health(kind, details)``: kind is "camera_blind", "camera_recovered", "camera_lost" or "camera_found".
HealthCallback = Callable[[str, dict[str, int | str]], None]


class MotionVerdict(StrEnum):
    SEEN = "seen"  # at least one analysed frame in the window showed motion
    NOT_SEEN = "not_seen"  # frames in the window were analysed and showed none
    UNKNOWN = "unknown"  # no usable frame in the window (camera lost, blind, or still learning)


class CameraMonitor:
    """Watches one :class:`Camera`; owns it from :meth:`start` on and closes it in :meth:`stop`.

    Threads: a *reader* thread calls ``camera.read()`` every ``1/fps`` s (a hung read stalls only this thread), and a
    *monitor* thread analyses the frames (ring buffer, motion, health, post-trigger snapshots). ``on_health`` and
    snapshot callbacks run on the monitor thread: keep them short (queue the work, e.g. into the outbox).
    Every other method is thread-safe and non-blocking unless it takes a ``timeout``.

    A frame that cannot be analysed, or cannot be encoded as JPEG, is logged at once the first time and then at most
    once per ``bad_frame_log_interval_s`` with the count since the previous line (a broken driver sends them at the
    frame rate).
    """

    def __init__(
        self,
        camera: Camera,
        *,
        on_health: HealthCallback | None = None,
        fps: float = 3.0,
        ring_seconds: float = 2.0,
        blind_after_s: float = 10.0,
        lost_after_s: float = 10.0,
        blind_max_stddev: float = 8.0,
        motion_min_area: float = 0.005,
        motion_learning_frames: int = 5,
        jpeg_quality: int = 80,
        max_snapshot_bytes: int = MAX_SNAPSHOT_BYTES,
        snapshot_before_s: float = 2.0,
        snapshot_after_s: float = 3.0,
        snapshot_max_frames: int = 6,
        motion_history_s: float = 60.0,
        bad_frame_log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.camera = camera
        self.on_health = on_health
        self.interval = 1.0 / fps
        self.jpeg_quality = jpeg_quality
        self.max_snapshot_bytes = max_snapshot_bytes
        self.snapshot_before_s = snapshot_before_s
        self.snapshot_after_s = snapshot_after_s
        self.snapshot_max_frames = snapshot_max_frames
        self.motion_history_s = max(motion_history_s, ring_seconds)
        self._clock = clock
        self._ring = FrameRing(ring_seconds, max_frames=max(2, math.ceil(ring_seconds * fps) + 2))
        self._health = HealthTracker(blind_after_s, lost_after_s)
        self._detector = MotionDetector(motion_min_area, motion_learning_frames)
        self._blind_max_stddev = blind_max_stddev
        self._motion: deque[tuple[float, bool | None]] = deque()
        self._bursts: list[SnapshotBurst] = []
        self._lock = threading.Lock()  # ring, bursts and motion history; never held while encoding
        self._changed = threading.Condition()  # notified after every observation
        self._state = self._health.state.value  # published after each observation (see _publish)
        self._last_t = -math.inf
        self._previous: Image | None = None
        self._previous_t = -math.inf  # when the picture of the previous frame was first read
        self._grabber = FrameGrabber(camera, self.interval, clock)
        self._unanalysable = ThrottledWarning(
            logger, "camera frame %s cannot be analysed (%s); counted as a failed read", bad_frame_log_interval_s, clock
        )
        self._unencodable = ThrottledWarning(
            logger, "no snapshot of a camera frame: %s", bad_frame_log_interval_s, clock
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.observations = 0

    @classmethod
    def from_config(
        cls,
        config: CameraConfig,
        camera: Camera,
        *,
        on_health: HealthCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> CameraMonitor:
        return cls(
            camera,
            on_health=on_health,
            clock=clock,
            fps=config.fps,
            ring_seconds=config.ring_seconds,
            blind_after_s=config.blind_after_s,
            lost_after_s=config.lost_after_s,
            blind_max_stddev=config.blind_max_stddev,
            motion_min_area=config.motion_min_area,
            motion_learning_frames=config.motion_learning_frames,
            jpeg_quality=config.jpeg_quality,
            snapshot_before_s=config.snapshot_before_s,
            snapshot_after_s=config.snapshot_after_s,
            snapshot_max_frames=config.snapshot_max_frames,
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("CameraMonitor already started")
        self._health.start(self._clock())
        self._thread = threading.Thread(target=self._monitor_loop, name="camera-monitor", daemon=True)
        self._grabber.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads and close the camera (unless its ``read()`` is hung); finish pending bursts."""
        self._stop.set()
        self._grabber.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            bursts, self._bursts = self._bursts, []
        for burst in bursts:
            burst.expire(math.inf)
        self._unanalysable.flush()
        self._unencodable.flush()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> CameraMonitor:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"starting"``, ``"ok"``, ``"frozen"`` or ``"uniform"`` (the newest frame is blind, not yet for
        ``blind_after_s``), ``"blind"`` or ``"lost"``.

        It changes only once the observation that changed it is in the ring buffer and the motion history, so whoever
        sees ``"ok"`` can take :meth:`latest_snapshot` of the frame behind it (unless analysing that frame failed:
        logged; the state follows the health events all the same).
        """
        return self._state

    def wait_for_state(self, state: str, timeout: float) -> bool:
        """Block until :attr:`state` equals ``state``; ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.state == state, timeout)

    def wait_for_observations(self, count: int, timeout: float) -> bool:
        """Block until :attr:`observations` (frames and failed reads so far, analysed or not) reaches ``count``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.observations >= count, timeout)

    def motion_verdict(self, t0: float, t1: float, *, timeout: float = 0.0) -> MotionVerdict:
        """Whether motion was seen in frames captured in ``[t0, t1]`` (monotonic seconds).

        With ``timeout > 0`` it first waits (at most that long) until the camera has been observed at ``t1`` or later,
        so a caller can ask about a window that reaches into the near future.
        """
        if timeout > 0:
            with self._changed:
                self._changed.wait_for(lambda: self._last_t >= t1 or self._stop.is_set(), timeout)
        with self._lock:
            verdicts = [motion for t, motion in self._motion if t0 <= t <= t1]
        if any(verdicts):
            return MotionVerdict.SEEN
        if False in verdicts:
            return MotionVerdict.NOT_SEEN
        return MotionVerdict.UNKNOWN

    def motion_between(self, t0: float, t1: float, *, timeout: float = 0.0) -> bool:
        """``True`` only if motion was seen in ``[t0, t1]`` (see :meth:`motion_verdict` for "could not tell")."""
        return self.motion_verdict(t0, t1, timeout=timeout) is MotionVerdict.SEEN

    @property
    def fresh_s(self) -> float:
        """How old a frame may be and still count as the camera's current view: two frame intervals, at least 0.5 s
        (as the monitor's own stall detector)."""
        return max(2 * self.interval, 0.5)

    def now(self) -> float:
        """The monitor's clock (the one frame times are on)."""
        return self._clock()

    def latest_snapshot(self) -> Snapshot | None:
        """The newest current frame that can be a snapshot, as JPEG; ``None`` if there is none.

        Only a frame at most :attr:`fresh_s` old counts, and none while the camera is lost: the ring buffer is trimmed
        only when a frame arrives, so without that bound it would offer a frame from before the camera was lost as if
        it were the view now. A frozen camera's repeated frames are not in the ring buffer, only the first of them:
        its picture is as old as that one, and once that is older than :attr:`fresh_s` there is no current frame.
        """
        if self.state == "lost":
            return None
        for frame in reversed(self._ring.between(self._clock() - self.fresh_s, math.inf)):
            snapshot = self._snapshot(frame, frame.t)
            if snapshot is not None:
                return snapshot
        return None

    def snapshots_around(
        self,
        trigger_time: float,
        before_s: float | None = None,
        after_s: float | None = None,
        max_frames: int | None = None,
        *,
        on_snapshot: SnapshotCallback | None = None,
    ) -> SnapshotBurst:
        """Snapshots from ``before_s`` before ``trigger_time`` to ``after_s`` after it, at most ``max_frames``
        (each defaults to the monitor's ``snapshot_*`` setting).

        Returns at once with ``burst.ready`` filled from the ring buffer (up to half of ``max_frames`` before the
        trigger, spread over the window and always including the newest); the rest arrive in ``burst.later``
        (``on_snapshot`` per frame, ``burst.wait(timeout)`` for all). A frame that cannot be a snapshot (JPEG cannot
        encode it) costs only itself: a frame before the trigger gives way to an older one still unchosen, else its
        place goes to a later frame, as does a later frame's place to the next one.
        """
        before_s = self.snapshot_before_s if before_s is None else before_s
        after_s = self.snapshot_after_s if after_s is None else after_s
        max_frames = self.snapshot_max_frames if max_frames is None else max_frames
        if max_frames < 1:
            raise ValueError("max_frames must be >= 1")
        with self._lock:
            before = self._ring.between(trigger_time - before_s, trigger_time)
            share = math.ceil(max_frames / 2) if after_s > 0 else max_frames
            from_before = min(len(before), share)
            room = max_frames - from_before  # for frames after the trigger
            already = [f for f in self._ring.between(trigger_time, math.inf) if f.t > trigger_time]
            already = already if after_s > 0 else []
            planned = from_before + min(len(already), room)
            burst = SnapshotBurst(
                trigger_time,
                [],
                deadline=trigger_time + after_s,
                max_later=max_frames - planned if after_s > 0 else 0,
                on_snapshot=on_snapshot,
            )
            if not burst.done and not self._stop.is_set():
                self._bursts.append(burst)
            else:
                burst.expire(math.inf)
        # Encoded outside the lock: the monitor thread keeps analysing frames meanwhile.
        # A frame that cannot be encoded or made to fit the snapshot limit is left out (the trigger's event never
        # lists it).
        ready = snapshots_spread(before, share, lambda frame: self._snapshot(frame, trigger_time))
        after: list[Snapshot] = []
        for frame in already:
            if len(after) >= room:
                break
            snapshot = self._snapshot(frame, trigger_time)
            if snapshot is not None:
                after.append(snapshot)
        burst.ready = ready + after
        burst.give_back(planned - len(burst.ready))
        return burst

    # -- threads -----------------------------------------------------------------------------------------------------

    def _monitor_loop(self) -> None:
        stall = max(2 * self.interval, 0.5)
        while not self._stop.is_set():
            item = self._grabber.get(timeout=stall)
            if self._stop.is_set():
                break
            t, image = item if item is not None else (self._clock(), None)
            events: list[HealthEvent] = []
            try:
                # The tracker moves first; once it has, its events are reported even if the analysis raises: it
                # will not report that transition again (a seal whose camera went blind must say so).
                frame, events = self._judge(t, image, "read_failed" if item is not None else "read_stalled")
                self._analyse(t, frame, found=any(event.kind == CAMERA_FOUND for event in events))
            except Exception:
                logger.exception("camera monitor failed to process an observation")
            self._unanalysable.tick()
            self._unencodable.tick()
            self._publish(t)
            for event in events:
                self._report(event)
            self._expire_bursts(self._clock())

    def _judge(self, t: float, image: Image | None, failure_reason: str) -> tuple[Frame | None, list[HealthEvent]]:
        """The health tracker's step: ``(frame, transitions)``, the frame with its blind reason and, if it repeats the
        one before bit for bit, when that picture was first read. A frame whose blindness cannot even be judged (not
        a BGR or grey image, e.g. raw two-channel YUYV) counts as a failed read: a camera that sends only such frames
        is lost, not "starting" or "ok" for ever."""
        if image is not None:
            try:
                blind = blind_reason(image, self._previous, self._blind_max_stddev)
                repeat = blind == "frozen" or (blind is not None and repeats(image, self._previous))
            except (ValueError, TypeError, IndexError) as exc:
                self._unanalysable.note(getattr(image, "shape", type(image).__name__), exc)
                image, failure_reason = None, "bad_frame"
            else:
                frame = Frame(t, image, blind, self._previous_t if repeat else None)
                self._previous, self._previous_t = image, frame.view_t
                return frame, self._health.frame(t, blind)
        return None, self._health.failure(t, failure_reason)

    def _analyse(self, t: float, frame: Frame | None, *, found: bool) -> None:
        """Motion, ring buffer and post-trigger snapshots for one observation (``frame`` None: no usable frame).

        A frame that repeats the one before is no new view: it shows no motion, and it goes neither into the ring
        buffer nor into a burst (its picture is there once, at the time it was first read)."""
        motion: bool | None = None
        if frame is not None and not frame.repeat:
            if found:
                self._detector.reset()
            motion = self._detector.feed(frame.image)
            if frame.blind is not None and motion is not True:
                motion = None  # a covered image cannot say "nobody there"
            with self._lock:
                self._ring.append(frame)
                wanting = [burst for burst in self._bursts if burst.wants(t)]
            jpeg = self._jpeg(frame) if wanting else None  # once for all; if None, the bursts wait for the next frame
            if jpeg is not None:
                for burst in wanting:
                    burst.add(Snapshot(t=t, offset_s=t - burst.trigger_time, jpeg=jpeg))
        with self._lock:
            self._motion.append((t, motion))
            horizon = t - self.motion_history_s
            while self._motion and self._motion[0][0] < horizon:
                self._motion.popleft()

    def _publish(self, t: float) -> None:
        """The tracker's state and the observation at ``t`` become visible (analysed or not), and waiters wake."""
        with self._changed:
            self._state = self._health.state.value
            self._last_t = max(self._last_t, t)
            self.observations += 1
            self._changed.notify_all()

    def _expire_bursts(self, now: float) -> None:
        with self._lock:
            self._bursts = [burst for burst in self._bursts if not burst.expire(now)]

    def _report(self, event: HealthEvent) -> None:
        logger.info("camera health: %s %s (state %s)", event.kind, event.details, self.state)
        if self.on_health is None:
            return
        try:
            self.on_health(event.kind, dict(event.details))
        except Exception:
            logger.exception("on_health callback failed for %s", event.kind)

    def _snapshot(self, frame: Frame, trigger_time: float) -> Snapshot | None:
        """The frame as a snapshot of the trigger at ``trigger_time``; None if it cannot be one (see :meth:`_jpeg`)."""
        jpeg = self._jpeg(frame)
        return None if jpeg is None else Snapshot(t=frame.t, offset_s=frame.t - trigger_time, jpeg=jpeg)

    def _jpeg(self, frame: Frame) -> bytes | None:
        """The frame as JPEG within the size limit (re-encoded smaller if need be); None (logged) if JPEG cannot
        encode it or it cannot fit."""
        try:
            return encode_jpeg_within(frame.image, self.jpeg_quality, self.max_snapshot_bytes)
        except FrameNotEncodable as exc:
            self._unencodable.note(exc)
            return None
