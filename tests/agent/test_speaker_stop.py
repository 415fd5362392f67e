"""A stop (disarm, shutdown) of the real :class:`~seal_agent.devices.speaker.WarningSpeaker` (the clip player process,
simpleaudio through ALSA into the tests' paced file sink): it is never lost, whenever it lands, it silences the warning
at once (asserted in bytes that reached the "device"), and the outcome says what happened: ``stopped`` only for a
clip cut short, ``played`` for one that played to its end even if a stop came after; a stop for one play never cuts
the next."""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_agent.devices.clip_process import ClipProcess
from seal_agent.devices.speaker import WarningSpeaker
from seal_dev.alsa_sink import PCM_BYTES_PER_S, alsa_file_config
from tests.agent.helpers import wait_until

ZH = DEFAULT_SOUNDS_DIR / "warning_zh.wav"
EN = DEFAULT_SOUNDS_DIR / "warning_en.wav"
#: What may reach the device after a stop: simpleaudio's ALSA buffer (0.3 s of the tests' clips) and a little more.
AFTER_STOP_BYTES = PCM_BYTES_PER_S // 2


@pytest.fixture
def alsa_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ALSA's default device is a file, taking samples at a speaker's pace: what is played lands in it."""
    sink = tmp_path / "alsa-out.raw"
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa_file_config(sink)))
    yield sink


def _pcm_bytes(path: Path) -> int:
    with wave.open(str(path)) as w:
        return w.getnframes() * w.getsampwidth() * w.getnchannels()


def _wav(path: Path, seconds: float = 1.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(b"\x01\x02" * int(22050 * seconds))
    return path


def _settled(sink: Path) -> int:
    """The sink's size once nothing more arrives (the pipe's last samples are drained at a speaker's pace)."""
    size = -1
    while True:
        now = sink.stat().st_size if sink.exists() else 0
        if now == size:
            return size
        size = now
        time.sleep(0.3)


def test_a_stop_right_after_the_play_is_sent_is_not_lost_and_the_clip_is_cut(
    alsa_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's race: the disarm lands right after the ``play`` line is written, before the player has read it.
    It was wiped when the player read the line: the whole zh clip reached the device, and it was signed ``stopped``."""
    speaker = WarningSpeaker([ZH, EN])
    assert wait_until(lambda: speaker._player is not None and speaker._player.alive, 5)
    time.sleep(1.0)  # the player is ready, blocked reading its stdin
    play = ClipProcess.play

    def play_then_stop(self: ClipProcess, *args: Any) -> bool:
        sent = play(self, *args)
        if args[-1] == 0:
            speaker.stop()  # the disarm, now: right after the line was written
        return sent

    monkeypatch.setattr(ClipProcess, "play", play_then_stop)
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_ended(30)
    reached = _settled(alsa_file)
    speaker.close()
    assert reached <= AFTER_STOP_BYTES < _pcm_bytes(ZH) // 3, f"{reached} of {_pcm_bytes(ZH)} bytes played"
    assert playback.outcome() == (
        "stopped",
        [
            {"language": "zh", "result": "stopped", "reason": None},
            {"language": "en", "result": "stopped", "reason": None},
        ],
    )


def test_a_stop_mid_clip_cuts_it_at_once_and_it_is_stopped(alsa_file: Path) -> None:
    speaker = WarningSpeaker([ZH, EN])
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_begun(10)
    assert wait_until(lambda: alsa_file.exists() and alsa_file.stat().st_size >= PCM_BYTES_PER_S, 10)  # 1 s played
    at_stop = alsa_file.stat().st_size
    speaker.stop()
    assert playback.wait_ended(10)
    reached = _settled(alsa_file)
    speaker.close()
    assert reached - at_stop <= AFTER_STOP_BYTES, f"{reached - at_stop} bytes reached the device after the stop"
    assert reached < _pcm_bytes(ZH) // 2
    assert playback.outcome()[0] == "stopped"
    assert [i["result"] for i in playback.languages()] == ["stopped", "stopped"]


def test_a_stop_after_a_clip_played_to_its_end_leaves_it_played(
    tmp_path: Path, alsa_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop lands after the player has played the first clip to its end (its ``done`` is on the way): that clip
    is ``played`` (all its samples reached the device); the second never starts and is ``stopped``."""
    first, second = _wav(tmp_path / "warning_zh.wav"), _wav(tmp_path / "warning_en.wav")
    speaker = WarningSpeaker([first, second])
    read_line = ClipProcess.read_line

    def stop_at_done(self: ClipProcess, deadline: float) -> str | None:
        line = read_line(self, deadline)
        if line is not None and line.startswith("done"):
            speaker.stop()  # the clip is over; the disarm comes now
        return line

    monkeypatch.setattr(ClipProcess, "read_line", stop_at_done)
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_ended(30)
    reached = _settled(alsa_file)
    speaker.close()
    assert reached == _pcm_bytes(first)
    assert playback.outcome() == (
        "stopped",
        [
            {"language": "zh", "result": "played", "reason": None},
            {"language": "en", "result": "stopped", "reason": None},
        ],
    )


def test_a_stop_after_the_last_clip_ended_leaves_the_warning_played(
    tmp_path: Path, alsa_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speaker = WarningSpeaker([_wav(tmp_path / "warning_zh.wav")])
    read_line = ClipProcess.read_line

    def stop_at_done(self: ClipProcess, deadline: float) -> str | None:
        line = read_line(self, deadline)
        if line is not None and line.startswith("done"):
            speaker.stop()
        return line

    monkeypatch.setattr(ClipProcess, "read_line", stop_at_done)
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_ended(30)
    speaker.close()
    assert playback.outcome() == ("played", [{"language": "zh", "result": "played", "reason": None}])


def test_repeated_stops_never_cut_the_next_warning(tmp_path: Path, alsa_file: Path) -> None:
    """Warnings stopped at every point (before the play is sent, as it is sent, while it plays), then one left alone:
    that one plays in full. No stop outlives its play. (A clip of 4 s: the sink's pipe holds about 1.5 s of samples,
    so a shorter one could be handed over whole, and end, before a stop at 0.3 s under a loaded machine.)"""
    clip = _wav(tmp_path / "warning_zh.wav", seconds=4.0)
    speaker = WarningSpeaker([clip])
    for delay in (0.0, 0.0, 0.001, 0.01, 0.05, 0.2, 0.0, 0.3):
        playback = speaker.play_warning()
        assert playback is not None
        time.sleep(delay)
        speaker.stop()
        assert playback.wait_ended(10)
        assert playback.outcome()[0] == "stopped", (delay, playback.outcome())
    before = _settled(alsa_file)
    playback = speaker.play_warning()
    assert playback is not None and playback.wait_ended(30)
    reached = _settled(alsa_file)
    speaker.close()
    assert playback.outcome() == ("played", [{"language": "zh", "result": "played", "reason": None}])
    assert reached - before == _pcm_bytes(clip)


def test_a_stop_for_an_earlier_play_does_not_stop_the_next(tmp_path: Path, alsa_file: Path) -> None:
    """The player's protocol: a ``stop`` that arrives once its play is over (late) is spent; the next play plays to
    its end; a stop sent before its play is read keeps that play from starting."""
    player = ClipProcess([_wav(tmp_path / "warning_zh.wav")])
    try:
        assert player.play(1, 0)
        assert player.read_line(time.monotonic() + 10) == "playing"
        assert (player.read_line(time.monotonic() + 10) or "").startswith("done ended")
        player.stop(1)  # late: play 1 is over
        assert player.play(2, 0)
        assert player.read_line(time.monotonic() + 10) == "playing"
        done = (player.read_line(time.monotonic() + 10) or "").split()
        assert done[:2] == ["done", "ended"] and int(done[2]) >= 900, done
        player.stop(3)  # before its play: kept for it
        assert player.play(3, 0)
        assert player.read_line(time.monotonic() + 10) == "done stopped 0"
        assert player.play(4, 0)
        assert player.read_line(time.monotonic() + 10) == "playing"
        player.stop(4)
        done = (player.read_line(time.monotonic() + 10) or "").split()
        assert done[:2] == ["done", "stopped"] and int(done[2]) < 900, done
    finally:
        player.close()
    assert _settled(alsa_file) < 3 * _pcm_bytes(tmp_path / "warning_zh.wav")
