"""Sections of the server's settings (:mod:`server.config`) about alarms, liveness and the pages' live stream."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AlarmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fold_window_s: int = Field(
        300,
        ge=0,
        le=7 * 24 * 3600,
        description="A repeat (same kind, same seal) within this long of the alarm's last occurrence is counted in "
        "the open or acknowledged alarm instead of opening a new one. Offline and missing events always fold.",
    )
    offline_grace_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="A seal that says it is offline (its Last Will, or a clean shutdown) gets its offline alarm only "
        "if it is not back (a new signed event) within this long: a seal that restarts pages nobody. 0: at once.",
    )


class LivenessSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    check_interval_s: float = Field(
        15.0, ge=0.05, le=3600, description="How often the server looks for seals silent for offline_after_s."
    )


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heartbeat_s: float = Field(
        5.0,
        ge=0.05,
        le=60,
        description="A page's live stream sends a heartbeat this often; a page that hears nothing for three times "
        "as long shows that its data may be stale.",
    )
    stream_max_s: float = Field(
        300.0,
        ge=0.05,
        le=24 * 3600,
        description="A live stream ends after this long and the browser reconnects at once, missing nothing: "
        "a browser that vanished without a word holds its stream no longer than this.",
    )
    write_timeout_s: float = Field(
        10.0,
        ge=0.05,
        le=600,
        description="A live stream whose browser takes longer than this to take a message is dropped.",
    )
    replay_size: int = Field(
        2048,
        ge=16,
        le=1_000_000,
        description="How many recent changes the server keeps to replay to a reconnecting page; a page that missed "
        "more is told to reload.",
    )
