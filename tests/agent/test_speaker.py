"""The real :class:`~seal_agent.devices.speaker.WarningSpeaker` (simpleaudio through ALSA into a file): a WAV that
simpleaudio loads but can never play is refused at start, never reported at each intrusion as a warning "stopped"."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_agent.devices.speaker import WarningSpeaker
from seal_agent.errors import AudioError


@pytest.fixture
def alsa_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ALSA's default device is a file (RECIPES.md): what is played lands in it."""
    sink = tmp_path / "alsa-out.raw"
    conf = tmp_path / "alsa-file.conf"
    conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{sink}"; format "raw" }}\n')
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    yield sink


def _wav(path: Path, *, channels: int = 1, width: int = 2, rate: int = 22050) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(b"\x01" * (channels * width * (rate // 10)))
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


def test_every_playable_format_is_accepted_and_plays(tmp_path: Path, alsa_file: Path) -> None:
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
