"""What simpleaudio can play, read from a WAV's header with the standard library alone: for ``check-config`` (which
needs no sound library) and for :class:`~seal_agent.devices.speaker.WarningSpeaker` at start alike. simpleaudio loads
any WAV but raises ValueError at every play for anything else."""

from __future__ import annotations

import wave
from pathlib import Path

PLAYABLE_CHANNELS = (1, 2)
PLAYABLE_SAMPLE_BYTES = (1, 2, 3, 4)
PLAYABLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000)


def unplayable(path: Path) -> str | None:
    """Why simpleaudio cannot play the WAV at ``path`` (it cannot be read, or its format), or None if it can."""
    try:
        with wave.open(str(path), "rb") as sound:
            channels, width, rate = sound.getnchannels(), sound.getsampwidth(), sound.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        return f"{path} cannot be read as a WAV: {exc}"
    problems = []
    if channels not in PLAYABLE_CHANNELS:
        problems.append(f"{channels} channels (1 or 2 can be played)")
    if width not in PLAYABLE_SAMPLE_BYTES:
        problems.append(f"{width} bytes per sample (1 to 4 can be played)")
    if rate not in PLAYABLE_RATES:
        problems.append(f"{rate} Hz (playable: {', '.join(map(str, PLAYABLE_RATES))} Hz)")
    return f"{path} cannot be played: {'; '.join(problems)}" if problems else None
