"""The ``[camera]`` section of the agent configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CameraConfig(BaseModel):
    """How the seal's camera is read, watched for motion and blindness, and how snapshots are kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(
        "",
        title="Camera source",
        description='"" = no camera; a device index such as "0" (cv2.VideoCapture index); or a video file path.',
        max_length=4096,
    )
    fps: float = Field(
        3.0, title="Frames per second", description="Rate at which frames are grabbed and analysed.", ge=0.5, le=30.0
    )
    ring_seconds: float = Field(
        2.0,
        title="Ring buffer",
        description="Seconds of recent frames kept in memory for pre-trigger snapshots.",
        ge=0.5,
        le=30.0,
    )
    blind_after_s: float = Field(
        10.0,
        title="Blind after",
        description="A uniform (covered, dark) or frozen image for this long is camera_blind.",
        ge=0.5,
        le=3600.0,
    )
    lost_after_s: float = Field(
        10.0,
        title="Lost after",
        description="No frame could be read for this long (device gone) is camera_lost.",
        ge=0.5,
        le=3600.0,
    )
    blind_max_stddev: float = Field(
        8.0,
        title="Uniform threshold",
        description="A frame whose grey-level standard deviation is below this counts as uniform (lens covered).",
        ge=0.0,
        le=64.0,
    )
    motion_min_area: float = Field(
        0.005,
        title="Motion minimum area",
        description="Smallest moving blob that counts as motion, as a fraction of the frame area.",
        gt=0.0,
        le=1.0,
    )
    motion_learning_frames: int = Field(
        5,
        title="Learning frames",
        description="Frames fed to the background model before its verdicts count (after start or reconnection).",
        ge=1,
        le=1000,
    )
    snapshot_before_s: float = Field(
        2.0,
        title="Snapshot before",
        description="Seconds before an intrusion from which snapshots are taken.",
        ge=0.0,
        le=30.0,
    )
    snapshot_after_s: float = Field(
        3.0,
        title="Snapshot after",
        description="Seconds after an intrusion during which snapshots are taken.",
        ge=0.0,
        le=60.0,
    )
    snapshot_max_frames: int = Field(
        6,
        title="Snapshots per intrusion",
        description="Most snapshots taken around one intrusion (before + after).",
        ge=1,
        le=100,
    )
    jpeg_quality: int = Field(80, title="JPEG quality", description="JPEG quality of snapshots (1-100).", ge=1, le=100)
    require_motion_confirmation: bool = Field(
        False,
        title="Require motion confirmation",
        description="Speak the warning only if the camera also saw motion; a blind or lost camera never suppresses it.",
    )
    motion_window_s: float = Field(
        1.0,
        title="Motion window",
        description="An intrusion's camera_motion covers frames this many seconds before the PIR edge, its "
        "snapshot_taken's camera_motion those before to after it; with require_motion_confirmation the warning waits "
        "at most this long (+0.5 s) for that verdict unless motion was seen before the edge.",
        ge=0.2,
        le=10.0,
    )
    snapshot_quota_mb: float = Field(
        200.0,
        title="Snapshot quota",
        description="Disk space for stored snapshots, in MiB (at most what the disk holds besides a reserve for the "
        "outbox); over it, or on a full disk, the oldest are thinned, receipted ones first.",
        gt=0.0,
        le=1_000_000.0,
    )

    @field_validator("source")
    @classmethod
    def _strip_source(cls, value: str) -> str:
        return value.strip()

    @property
    def enabled(self) -> bool:
        """Whether a camera is configured at all."""
        return self.source != ""

    @property
    def device_index(self) -> int | None:
        """The device index when ``source`` is an integer such as ``"0"``, else ``None``."""
        return int(self.source) if self.source.isdigit() else None

    @property
    def snapshot_quota_bytes(self) -> int:
        return int(self.snapshot_quota_mb * 1024 * 1024)
