"""The [camera] configuration section."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from seal_agent.devices.camera import CameraConfig, CameraMonitor, VideoFileCamera


def test_defaults_are_valid_and_mean_no_camera():
    config = CameraConfig()

    assert not config.enabled and config.device_index is None
    assert config.require_motion_confirmation is False


def test_default_ring_holds_the_pre_trigger_snapshots():
    """The defaults fit together: the ring buffer covers the pre-trigger window and holds enough frames for the
    pre-trigger half of a trigger's snapshots."""
    config = CameraConfig()

    assert config.snapshot_before_s <= config.ring_seconds
    assert config.snapshot_before_s * config.fps >= math.ceil(config.snapshot_max_frames / 2)


def test_every_field_is_documented_and_bounded():
    for name, field in CameraConfig.model_fields.items():
        assert field.description, f"{name} has no description"
        if field.annotation in (int, float):
            bounds = [m for m in field.metadata if type(m).__name__ in {"Ge", "Gt", "Le", "Lt"}]
            assert len(bounds) == 2, f"{name} is not bounded on both sides"


def test_unknown_keys_and_out_of_bounds_values_are_refused():
    with pytest.raises(ValidationError, match="extra"):
        CameraConfig.model_validate({"sourse": "0"})
    with pytest.raises(ValidationError):
        CameraConfig(fps=0)
    with pytest.raises(ValidationError):
        CameraConfig(jpeg_quality=101)
    with pytest.raises(ValidationError):
        CameraConfig(snapshot_quota_mb=0)


def test_source_forms():
    assert CameraConfig(source=" 0 ").device_index == 0
    assert CameraConfig(source="/var/lib/seal/demo.avi").device_index is None
    assert CameraConfig(source="0").enabled
    assert CameraConfig(snapshot_quota_mb=1).snapshot_quota_bytes == 1024 * 1024


def test_monitor_from_config(tmp_path):
    config = CameraConfig(source=str(tmp_path / "x.avi"), fps=4.0, ring_seconds=2.0, jpeg_quality=70)

    monitor = CameraMonitor.from_config(config, VideoFileCamera(config.source))

    assert monitor.interval == 0.25 and monitor.jpeg_quality == 70 and monitor.state == "starting"
