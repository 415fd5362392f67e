"""What simpleaudio can play, read from a WAV with the standard library alone: for ``check-config`` (which needs no
sound library) and for :class:`~seal_agent.devices.speaker.WarningSpeaker` at start alike. simpleaudio loads any WAV
but raises ValueError at every play for anything else, and "plays" an empty or truncated one in an instant."""

from __future__ import annotations

import wave
from pathlib import Path

PLAYABLE_CHANNELS = (1, 2)
PLAYABLE_SAMPLE_BYTES = (1, 2, 3, 4)
PLAYABLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000)
#: A warning clip shorter than this is no spoken warning (an empty file, a copy cut short).
MIN_DURATION_S = 0.5


def unplayable(path: Path) -> str | None:
    """Why the WAV at ``path`` cannot be played as a warning (it cannot be read, its format, samples missing or too
    few), or None if it can."""
    try:
        with wave.open(str(path), "rb") as sound:
            channels, width, rate = sound.getnchannels(), sound.getsampwidth(), sound.getframerate()
            declared = sound.getnframes()
            present = len(sound.readframes(declared)) // max(1, channels * width)
    except (OSError, EOFError, wave.Error) as exc:
        return f"{path} cannot be read as a WAV: {exc}"
    problems = []
    if channels not in PLAYABLE_CHANNELS:
        problems.append(f"{channels} channels (1 or 2 can be played)")
    if width not in PLAYABLE_SAMPLE_BYTES:
        problems.append(f"{width} bytes per sample (1 to 4 can be played)")
    if rate not in PLAYABLE_RATES:
        problems.append(f"{rate} Hz (playable: {', '.join(map(str, PLAYABLE_RATES))} Hz)")
    if present < declared:
        problems.append(f"truncated: its header declares {declared} frames, only {present} are in the file")
    if present < MIN_DURATION_S * rate:
        problems.append(f"{present / rate if rate else 0:.3f} s of sound (at least {MIN_DURATION_S} s is needed)")
    return f"{path} cannot be played: {'; '.join(problems)}" if problems else None
