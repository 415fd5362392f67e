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
#: How much sooner than its duration a clip's playback may end and still count as ``played``: simpleaudio drains ALSA
#: before its play ends, so what it cannot see is only a buffer below ALSA (a pipe's 4 KiB, 46 ms, in the tests'
#: sink) and the timing of our polling. A playback that ended sooner (without a stop) did not play the whole clip:
#: simpleaudio's thread gives up silently when ALSA refuses its samples mid-play (a speaker unplugged, a device
#: error), and a clip the device took only 80 % of is no warning that ``played``.
PLAYED_SLACK_S = 0.2
#: How long past its duration a clip may still be playing before the sound device is declared stalled (its writes
#: block: a wedged USB speaker): the clip is ``failed`` and the playback is abandoned (see :class:`WarningSpeaker`).
STALL_MARGIN_S = 3.0
#: How many abandoned plays may still be stuck in the sound device before no new one is tried: each holds one of
#: simpleaudio's threads and a device handle until the device lets go. Past it, a warning fails at once.
MAX_STALLED_PLAYS = 2
_POLL_S = 0.02


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
    ``played`` only if its playback lasted its whole duration (less :data:`PLAYED_SLACK_S`); one that ended sooner
    without a stop is ``failed`` (the reason gives the measured and expected durations).

    A device that stops taking samples without an error (its writes block) would hold the warning for good, and
    every later one would be ``busy``. So each clip has a watchdog: still playing :data:`STALL_MARGIN_S` past its
    duration, it is ``failed`` ("the sound device stalled"), the clips after it are ``failed`` untried, and the
    warning is over; its play is abandoned (stopped, but simpleaudio's thread may stay blocked in the device) and the
    next warning opens the device afresh. While :data:`MAX_STALLED_PLAYS` abandoned plays are still stuck, a warning
    tries no clip and fails at once (so stuck threads and handles never pile up); once they end, clips are tried again.

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
        self._stalled: list[simpleaudio.PlayObject] = []  # abandoned plays, maybe still stuck in the device
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
            stuck = self._stuck_plays()
            for index, (name, language, sound) in enumerate(self._sounds):
                if self._stop.is_set():
                    break
                if stuck >= MAX_STALLED_PLAYS:
                    reason = f"not tried: {stuck} earlier plays are still stuck in the stalled sound device"
                    logger.error("warning %s failed: %s", name, reason)
                    playback.finished(language, "failed", reason)
                    continue
                try:
                    stalled = self._play_one(playback, name, language, sound)
                except Exception as exc:  # this clip's top level: it failed (never "stopped"); the next is tried
                    logger.exception("warning %s failed", name)
                    playback.finished(language, "failed", f"{type(exc).__name__}: {exc}")
                    continue
                if stalled:  # the clips after it would stall too: they are not tried
                    for _, later, _ in self._sounds[index + 1 :]:
                        playback.finished(later, "failed", f"not tried: the sound device stalled on {language}")
                    break
        finally:
            with self._lock:
                self._current = None
            self._done.set()
            playback.end()

    def _stuck_plays(self) -> int:
        """How many abandoned plays are still stuck in the device (those that ended are forgotten)."""
        with self._lock:
            self._stalled = [play for play in self._stalled if play.is_playing()]
            return len(self._stalled)

    def _play_one(self, playback: WarningPlayback, name: str, language: str, sound: simpleaudio.WaveObject) -> bool:
        """Play one file to its end and report it; a file that cannot be played is ``failed``, never raised. True if
        the device stalled (the play is abandoned)."""
        try:
            play = sound.play()
        except SimpleaudioError as exc:
            logger.error("cannot play warning %s: %s", name, exc)
            playback.finished(language, "failed", str(exc))
            return False
        with self._lock:
            self._current = play
            stopped = self._stop.is_set()  # a stop() between play() and here did not see this play
        if stopped:
            play.stop()
        began = time.monotonic()
        expected = _duration_s(sound)
        if not stopped:
            playback.playing(language)
            self._started(name)
        deadline = began + expected + STALL_MARGIN_S
        while play.is_playing() and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        lasted = time.monotonic() - began
        with self._lock:
            self._current = None
            stalled = play.is_playing()
            if stalled:
                self._stalled.append(play)
        if stalled:
            play.stop()  # ends it if the device ever takes a write again
            reason = f"the sound device stalled: still playing {lasted:.2f} s into a {expected:.2f} s clip"
            logger.error("warning %s failed: %s; its play is abandoned", name, reason)
            playback.finished(language, "failed", reason)
        elif self._stop.is_set():
            playback.finished(language, "stopped")
            logger.info("warning %s stopped", name)
        elif lasted < expected - PLAYED_SLACK_S:
            reason = (
                f"playback ended after {lasted:.2f} s of {expected:.2f} s ({lasted / expected:.0%}; the sound device"
                " stopped taking samples)"
            )
            logger.error("warning %s failed: %s", name, reason)
            playback.finished(language, "failed", reason)
        else:
            playback.finished(language, "played")
            logger.info("warning %s played (%.2f s of %.2f s)", name, lasted, expected)
        return stalled

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
