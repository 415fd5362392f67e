"""The spoken warning through simpleaudio (ALSA). Playback runs on its own thread; errors are logged and reported in
the warning's :class:`~seal_agent.interfaces.WarningPlayback`, never raised."""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import simpleaudio
from simpleaudio._simpleaudio import SimpleaudioError

from seal_agent.devices.wav_format import unplayable
from seal_agent.errors import AudioError
from seal_agent.interfaces import WarningPlayback

logger = logging.getLogger(__name__)

_ASOUND_CARDS = Path("/proc/asound/cards")
#: A clip whose playback ended (without a stop) before this share of its duration did not play: simpleaudio's thread
#: gives up silently when ALSA refuses its samples mid-play (a speaker unplugged, a device error).
PLAYED_SHARE = 0.75


def sound_card_problem(cards_file: Path = _ASOUND_CARDS) -> str | None:
    """Why this machine cannot play sound (no ALSA, no card), or None if it has a sound card."""
    try:
        text = cards_file.read_text(errors="replace")
    except OSError:
        return f"no sound card: {cards_file} does not exist (no ALSA driver loaded)"
    if "no soundcards" in text or not text.strip():
        return f"no sound card: {cards_file} lists none"
    return None


class WarningSpeaker:
    """Plays the warning WAVs in order, implementing :class:`~seal_agent.interfaces.Speaker`.

    The files are loaded once at construction, so a missing or broken file stops the agent at start, not at the
    first intrusion. ``languages`` name the files in the warning's outcome (default: the file name without
    ``warning_`` and the suffix). A file that cannot be played (no sound card, device busy) is logged and reported
    as that language's ``failed`` with simpleaudio's reason; the next file is still tried. simpleaudio raises
    nothing when the device refuses the samples after it opened: its thread just ends. So a clip counts as
    ``played`` only if its playback lasted at least :data:`PLAYED_SHARE` of its duration; one that ended sooner
    without a stop is ``failed`` (the reason gives the measured and expected durations).

    ``on_started(name)`` (optional) is called on the playback thread each time simpleaudio accepted a file's PCM
    buffer (``play()`` returned: the ALSA device is open and simpleaudio's own thread is writing to it), e.g. to
    measure or log how fast the warning starts. Its failures are logged and never stop the warning.
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        languages: Sequence[str] | None = None,
        on_started: Callable[[str], None] | None = None,
    ) -> None:
        if not files:
            raise AudioError("no warning sound configured")
        if languages is None:
            languages = [path.stem.removeprefix("warning_") for path in files]
        if len(languages) != len(files) or len(set(languages)) != len(languages):
            raise AudioError(f"one distinct language per warning sound is needed, got {list(languages)}")
        self._sounds: list[tuple[str, str, simpleaudio.WaveObject]] = []
        for path, language in zip(files, languages, strict=True):
            try:
                sound = simpleaudio.WaveObject.from_wave_file(str(path))
            except (OSError, EOFError, wave.Error) as exc:
                raise AudioError(f"cannot load warning sound {path}: {exc}") from exc
            problem = unplayable(path)
            if problem is not None:  # simpleaudio would refuse it at every intrusion: refuse it now
                raise AudioError(f"warning sound {problem}")
            self._sounds.append((path.name, language, sound))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._current: simpleaudio.PlayObject | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self.on_started = on_started

    @property
    def languages(self) -> list[str]:
        return [language for _, language, _ in self._sounds]

    def play_warning(self) -> WarningPlayback | None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return None
            self._stop.clear()
            self._done.clear()
            playback = WarningPlayback(self.languages)
            self._thread = threading.Thread(target=self._play_all, args=(playback,), name="seal-warning", daemon=True)
            self._thread.start()
            return playback

    def stop(self) -> None:
        self._stop.set()  # before reading _current: the playback thread re-checks it after publishing its play
        with self._lock:
            current = self._current
        if current is not None:
            current.stop()

    def is_playing(self) -> bool:
        return not self._done.is_set()

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until the current warning has finished; False on timeout."""
        return self._done.wait(timeout)

    def close(self) -> None:
        self.stop()
        self._done.wait(5.0)

    def _play_all(self, playback: WarningPlayback) -> None:
        """The playback thread's top level."""
        try:
            for name, language, sound in self._sounds:
                if self._stop.is_set():
                    break
                try:
                    self._play_one(playback, name, language, sound)
                except Exception as exc:  # this clip's top level: it failed (never "stopped"); the next is tried
                    logger.exception("warning %s failed", name)
                    playback.finished(language, "failed", f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._current = None
            self._done.set()
            playback.end()

    def _play_one(self, playback: WarningPlayback, name: str, language: str, sound: simpleaudio.WaveObject) -> None:
        """Play one file to its end and report it; a file that cannot be played is ``failed``, never raised."""
        try:
            play = sound.play()
        except SimpleaudioError as exc:
            logger.error("cannot play warning %s: %s", name, exc)
            playback.finished(language, "failed", str(exc))
            return
        with self._lock:
            self._current = play
            stopped = self._stop.is_set()  # a stop() between play() and here did not see this play
        if stopped:
            play.stop()
            playback.finished(language, "stopped")
            return
        began = time.monotonic()
        playback.playing(language)
        self._started(name)
        play.wait_done()
        lasted = time.monotonic() - began
        with self._lock:
            self._current = None
        expected = _duration_s(sound)
        if self._stop.is_set():
            playback.finished(language, "stopped")
            logger.info("warning %s stopped", name)
        elif lasted < PLAYED_SHARE * expected:
            reason = f"playback ended after {lasted:.2f} s of {expected:.2f} s (the sound device stopped taking them)"
            logger.error("warning %s failed: %s", name, reason)
            playback.finished(language, "failed", reason)
        else:
            playback.finished(language, "played")
            logger.info("warning %s played (%.2f s of %.2f s)", name, lasted, expected)

    def _started(self, name: str) -> None:
        hook = self.on_started
        if hook is None:
            return
        try:
            hook(name)
        except Exception:
            logger.exception("on_started hook failed for %s", name)


def _duration_s(sound: simpleaudio.WaveObject) -> float:
    """How long ``sound`` plays."""
    frame_bytes = sound.num_channels * sound.bytes_per_sample
    return len(sound.audio_data) / (frame_bytes * sound.sample_rate)
