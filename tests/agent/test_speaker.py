"""The real :class:`~seal_agent.devices.speaker.WarningSpeaker` (simpleaudio through ALSA into a file): a WAV that
simpleaudio loads but can never play (or "plays" in an instant) is refused at start, never reported at each intrusion
as a warning "stopped" or "played"; a clip the device stopped taking is ``failed``."""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

import seal_agent.devices.speaker as speaker_module
from seal_agent.behaviour.warning_outcome import SpeakerHealth, WarningStart
from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_agent.devices.speaker import WarningSpeaker
from seal_agent.devices.wav_format import unplayable
from seal_agent.errors import AudioError
from seal_dev.alsa_sink import alsa_file_config
from tests.agent.helpers import wait_until


@pytest.fixture
def alsa_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ALSA's default device is a file (RECIPES.md): what is played lands in it."""
    sink = tmp_path / "alsa-out.raw"
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa_file_config(sink)))
    yield sink


def _wav(path: Path, *, channels: int = 1, width: int = 2, rate: int = 22050) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x01" * (channels * width * rate))  # 1 s
    return path


@pytest.mark.parametrize(
    ("options", "problem"),
    [({"channels": 3}, "3 channels"), ({"rate": 12345}, "12345 Hz")],
)
def test_a_warning_sound_simpleaudio_cannot_play_is_refused_at_start(
    tmp_path: Path, alsa_file: Path, options: dict[str, int], problem: str
) -> None:
    bad = _wav(tmp_path / "warning_zh.wav", **options)
    with pytest.raises(AudioError, match=problem):
        WarningSpeaker([bad, DEFAULT_SOUNDS_DIR / "warning_en.wav"])


def test_every_playable_format_is_accepted_and_plays(
    tmp_path: Path, alsa_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test sink takes 44,100 bytes a second, so this 1 s clip of 176,400 takes 4 s: not a stalled device.
    monkeypatch.setattr(speaker_module, "STALL_MARGIN_S", 10.0)
    sound = _wav(tmp_path / "warning_zh.wav", channels=2, width=2, rate=44100)
    speaker = WarningSpeaker([sound, DEFAULT_SOUNDS_DIR / "warning_en.wav"])
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_ended(30)
    assert playback.outcome() == (
        "played",
        [
            {"language": "zh", "result": "played", "reason": None},
            {"language": "en", "result": "played", "reason": None},
        ],
    )
    speaker.close()


@pytest.mark.parametrize(
    ("cut", "problem"),
    [("empty", "0.000 s of sound"), ("truncated", "declares 91227 frames, only 78"), ("short", "0.200 s of sound")],
)
def test_an_empty_truncated_or_too_short_warning_sound_is_refused_at_check_config_and_start(
    tmp_path: Path, alsa_file: Path, cut: str, problem: str
) -> None:
    """simpleaudio "plays" such a file in an instant, and every warning was then signed ``played``."""
    bad = tmp_path / "warning_zh.wav"
    if cut == "truncated":  # a copy cut short: its header still says 4.1 s, 156 bytes of samples remain
        bad.write_bytes((DEFAULT_SOUNDS_DIR / "warning_zh.wav").read_bytes()[:200])
    else:
        with wave.open(str(bad), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(22050)
            out.writeframes(b"" if cut == "empty" else bytes(2 * 4410))
    assert problem in (unplayable(bad) or ""), unplayable(bad)  # what check-config says
    with pytest.raises(AudioError, match=problem):
        WarningSpeaker([bad, DEFAULT_SOUNDS_DIR / "warning_en.wav"])


def test_a_warning_the_sound_device_stops_taking_mid_play_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ALSA opens the device, then refuses every write (a sink on ``/dev/full``, as a USB speaker pulled out):
    simpleaudio's thread ends silently at once. Each language is ``failed`` with the measured and expected durations,
    and the heartbeat's ``speaker`` says so; it was ``played``."""
    conf = tmp_path / "alsa-full.conf"
    conf.write_text('pcm.!default { type file; slave.pcm { type null }; file "/dev/full"; format "raw" }\n')
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    health = SpeakerHealth(time.monotonic)
    speaker = WarningSpeaker([DEFAULT_SOUNDS_DIR / "warning_zh.wav", DEFAULT_SOUNDS_DIR / "warning_en.wav"])
    playback = speaker.play_warning()
    assert playback is not None
    health.watch(WarningStart("started", playback))
    assert playback.wait_ended(30)
    speaker.close()
    state, languages = playback.outcome()
    assert state == "failed" and [i["result"] for i in languages] == ["failed", "failed"], languages
    assert "of 4.14 s" in languages[0]["reason"] and "of 3.50 s" in languages[1]["reason"], languages
    assert health.payload()["speaker"] == "failed"
    assert "warning warning_zh.wav failed: playback ended after" in caplog.text


def test_the_first_clip_through_a_fresh_sink_is_taken_at_a_speaker_s_pace(tmp_path: Path, alsa_file: Path) -> None:
    """1 s of sound is less than a pipe's default 64 KiB: were the sink's buffer made small only after the first
    play had filled it (a race the sink's reader could lose), that play would end at once, and the speaker would
    rightly call it failed. The last samples leave the pipe after the play's end."""
    speaker = WarningSpeaker([_wav(tmp_path / "warning_zh.wav")])
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_ended(30)
    assert playback.outcome() == ("played", [{"language": "zh", "result": "played", "reason": None}])
    assert wait_until(lambda: alsa_file.stat().st_size == 2 * 22050, 30)
