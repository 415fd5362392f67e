"""The real :class:`~seal_agent.devices.speaker.WarningSpeaker` on a sound device that misbehaves without an error
(simpleaudio -> ALSA file plugin -> a FIFO the test controls): one that stops taking samples for good (its writes
block: a wedged USB speaker) and one that goes away after 80 % of a clip. Found by a hostile review: the first was
signed ``started`` with no ``warning_result`` ever, every later warning ``busy`` and the heartbeat's speaker
``untested``; the second was signed ``played``."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

import seal_agent.behaviour.triggers as triggers
import seal_agent.devices.speaker as speaker_module
from seal_agent.behaviour.warning_outcome import SpeakerHealth, WarningStart
from seal_agent.config import DEFAULT_SOUNDS_DIR
from seal_agent.devices.speaker import WarningSpeaker
from seal_agent.interfaces import WarningPlayback
from seal_dev.broker import PrivateBroker
from tests.agent.helpers import CourtSubscriber, RecordingSpeaker, RuntimeFactory, pulse, write_config

DEVICE = "seal-test-1"
PCM_BYTES_PER_S = 44100  # the clips in sounds/: 22050 Hz mono 16 bit
ZH, EN = DEFAULT_SOUNDS_DIR / "warning_zh.wav", DEFAULT_SOUNDS_DIR / "warning_en.wav"


@pytest.fixture
def fifo_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """ALSA's default device writes into a FIFO with a 4 KiB buffer; yields its reader's fd (closed at the end)."""
    fifo = tmp_path / "spk.fifo"
    os.mkfifo(fifo)
    conf = tmp_path / "alsa.conf"
    conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{fifo}"; format "raw" }}\n')
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    reader = os.open(fifo, os.O_RDWR)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    yield reader
    try:
        os.close(reader)
    except OSError:
        pass


def test_a_clip_the_device_drops_at_80_percent_is_failed_not_played(fifo_device: int) -> None:
    """The speaker takes samples at its pace, then goes (its pipe's reader closes) after 80 % of the clip."""
    total = int(4.137 * PCM_BYTES_PER_S)
    cut = int(0.80 * total)
    taken = [0]

    def speaker_that_dies() -> None:
        start = time.monotonic()
        while taken[0] < cut:
            taken[0] += len(os.read(fifo_device, 2048))
            ahead = taken[0] / PCM_BYTES_PER_S - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        os.close(fifo_device)  # unplugged: the device takes nothing more

    threading.Thread(target=speaker_that_dies, daemon=True).start()
    speaker = WarningSpeaker([ZH], languages=["zh"])
    health = SpeakerHealth(time.monotonic)
    playback = speaker.play_warning()
    assert playback is not None
    health.watch(WarningStart("started", playback))
    assert playback.wait_ended(30)
    state, languages = playback.outcome()
    assert taken[0] < 0.85 * total
    assert state == "failed", (state, languages)
    assert "of 4.14 s" in languages[0]["reason"], languages
    assert health.payload()["speaker"] == "failed"


def test_a_stalled_device_fails_the_clip_and_the_next_warning_opens_it_afresh(
    fifo_device: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device takes 4 KiB and then nothing (never read): each warning ends ``failed`` ("stalled": the watchdog's
    reason), not ``busy``, and the stuck clip's process is killed (none is left behind)."""
    monkeypatch.setattr(speaker_module, "STALL_MARGIN_S", 1.0)
    speaker = WarningSpeaker([ZH, EN], languages=["zh", "en"])
    health = SpeakerHealth(time.monotonic)
    for attempt in range(3):
        playback = speaker.play_warning()
        assert playback is not None, f"warning {attempt + 1} was refused as busy"
        health.watch(WarningStart("started", playback))
        assert playback.wait_ended(30)
        state, languages = playback.outcome()
        assert state == "failed", languages
        assert "the sound device stalled: still playing" in languages[0]["reason"], languages
        assert languages[1] == {
            "language": "en",
            "result": "failed",
            "reason": "not tried: the sound device stalled on zh",
        }
        assert health.payload()["speaker"] == "failed"
        assert speaker._stuck_plays() == 0  # killed and gone: nothing piles up
    speaker.close()


def test_a_device_whose_open_blocks_freezes_nothing_and_is_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ALSA's file plugin opens a FIFO nobody reads: the open blocks. simpleaudio opens holding the interpreter's lock,
    so this froze every thread of the agent (found by the same review); the clip's own process blocks instead, and is
    killed after OPEN_MAX_S."""
    fifo = tmp_path / "nobody.fifo"
    os.mkfifo(fifo)
    conf = tmp_path / "alsa.conf"
    conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{fifo}"; format "raw" }}\n')
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(conf))
    monkeypatch.setattr(speaker_module, "OPEN_MAX_S", 2.0)
    speaker = WarningSpeaker([ZH], languages=["zh"])
    ticks: list[float] = []
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(0.05):
            ticks.append(time.monotonic())

    threading.Thread(target=ticker, daemon=True).start()
    playback = speaker.play_warning()
    assert playback is not None
    began = time.monotonic()
    time.sleep(1.5)
    during = [t for t in ticks if t > began]
    stop.set()
    assert len(during) >= 10, f"the process froze: {len(during)} ticks in 1.5 s"
    assert playback.wait_ended(30)
    state, languages = playback.outcome()
    assert state == "failed" and "the sound device stalled: not open after 2 s" in languages[0]["reason"], languages
    assert speaker._stuck_plays() == 0


def test_a_hung_sound_device_is_signed_failed_and_the_next_intrusion_is_tried_not_busy(
    tmp_path: Path,
    fifo_device: int,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
) -> None:
    """Intrusion 1's warning stalls: its warning_result says ``failed`` (stalled), the heartbeat's speaker says
    ``failed``, and intrusion 2 (after the clip's length plus the margin) is tried on a fresh device handle."""
    speaker = WarningSpeaker([ZH, EN], languages=["zh", "en"])
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=0, repeat_s=1000), speaker=speaker)
    runtime.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "warning_result"), timeout=30)
    [first] = court.payloads(DEVICE, "intrusion")
    [result] = court.payloads(DEVICE, "warning_result")
    assert first["warning"] == "started"
    assert result["warning"] == "failed", result
    assert "the sound device stalled" in result["warning_languages"][0]["reason"], result
    pulse(mock_pins)
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 2, timeout=30)
    runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat"), timeout=30)
    second = court.payloads(DEVICE, "intrusion")[1]
    beat = court.payloads(DEVICE, "heartbeat")[-1]
    assert second["warning"] != "busy", second
    assert beat["speaker"] == "failed", beat
    assert "stalled" in beat["speaker_failure"]["reason"], beat
    speaker.stop()


class _HungSpeaker(RecordingSpeaker):
    """A speaker whose warnings never end (a thread stuck where no watchdog reaches)."""

    def play_warning(self) -> WarningPlayback | None:
        with self._cond:
            self.plays += 1
        playback = WarningPlayback(self.languages)
        playback.playing(self.languages[0])
        return playback


def test_a_warning_that_never_ends_is_recorded_failed_when_the_result_wait_is_over(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wait for a warning_result (WARNING_END_MAX_S) only logged: the promised warning_result never came."""
    monkeypatch.setattr(triggers, "WARNING_END_MAX_S", 1.0)
    runtime = runtimes(write_config(tmp_path, broker, cooldown_s=0, repeat_s=1000), speaker=_HungSpeaker())
    runtime.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: c.payloads(DEVICE, "warning_result"), timeout=30)
    [result] = court.payloads(DEVICE, "warning_result")
    assert result["warning"] == "failed", result
    assert [i["result"] for i in result["warning_languages"]] == ["failed", "failed"], result
    assert "did not end within 1 s" in result["warning_languages"][0]["reason"], result
    runtime.agent.heartbeat()
    assert court.wait_for(lambda c: c.payloads(DEVICE, "heartbeat"), timeout=30)
    assert court.payloads(DEVICE, "heartbeat")[-1]["speaker"] == "failed"
