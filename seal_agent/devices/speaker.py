"""The spoken warning through simpleaudio (ALSA). Playback runs on its own thread, and the clips in a process of their
own (:mod:`seal_agent.devices.clip_player`); errors are logged and reported in the warning's
:class:`~seal_agent.interfaces.WarningPlayback`, never raised."""

from __future__ import annotations

import logging
import os
import threading
import time
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import simpleaudio

from seal_agent.devices.clip_process import ClipProcess
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
#: block: a wedged USB speaker): the clip is ``failed`` and its process killed (see :class:`WarningSpeaker`).
STALL_MARGIN_S = 3.0
#: How long the clip player may take to open the device (milliseconds, usually; a fresh player's interpreter starts in
#: well under a second, even on a Pi) before the device is declared stalled.
OPEN_MAX_S = 5.0
#: How many killed clip players may still be alive (stuck where a kill cannot reach, e.g. a driver's uninterruptible
#: wait) before no new one is started: past it, a warning fails at once, so stuck processes never pile up.
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
    without a stop is ``failed`` (the reason gives the measured and expected durations). A clip is ``stopped`` only if
    :meth:`stop` really cut it short (the player says it stopped it before its whole duration less
    :data:`PLAYED_SLACK_S`, or never started it); one that played to its end is ``played`` even if a stop came after.

    The clips play in a :mod:`~seal_agent.devices.clip_player` process, started with the speaker and kept ready
    (started again if ``ALSA_CONFIG_PATH`` has changed since), so that a device that blocks holds only that
    process: simpleaudio opens the device holding the interpreter's lock (in the agent, an open that blocks froze
    every thread), and its thread cannot be stopped while a write blocks. A device that stops taking samples without
    an error would have held the warning for good, and every later one would have been ``busy``. So each clip has a
    watchdog: still playing :data:`STALL_MARGIN_S` past its duration (or not open after :data:`OPEN_MAX_S`), it is
    ``failed`` ("the sound device stalled"), the clips after it are ``failed`` untried, the warning is over, and the
    player is killed (the device's handle goes with it); the next clip starts a fresh one. While
    :data:`MAX_STALLED_PLAYS` killed players are still alive (a kill cannot reach them), a warning tries no clip and
    fails at once, so stuck processes never pile up; once they are gone, clips are tried again.

    ``on_started(name)`` (optional) is called on the playback thread each time simpleaudio accepted a file's PCM
    buffer (the player said ``play()`` returned: the ALSA device is open and simpleaudio's thread writes to it), e.g. to
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
        self._sounds: list[tuple[Path, str, float]] = []
        for path, language in zip(files, languages, strict=True):
            try:
                sound = simpleaudio.WaveObject.from_wave_file(str(path))
            except (OSError, EOFError, wave.Error) as exc:
                raise AudioError(f"cannot load warning sound {path}: {exc}") from exc
            problem = unplayable(path)
            if problem is not None:  # simpleaudio would refuse it at every intrusion: refuse it now
                raise AudioError(f"warning sound {problem}")
            self._sounds.append((path, language, _duration_s(sound)))
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._current: tuple[ClipProcess, int] | None = None  # the player and play number while it plays a clip
        self._plays = 0  # the number of the last play sent to a player
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._stalled: list[ClipProcess] = []  # killed players, maybe not yet gone
        self._player: ClipProcess | None = None  # ready for the next clip (used by the playback thread only)
        self._player_ready()
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
        """Stop the warning: the clip playing is cut at once (its player reads the stop within 10 ms), and no clip
        starts after this. The playback thread publishes each play's number under the lock, after checking the
        stop, before sending it; this reads it under the lock, after setting the stop: either that sees the stop and
        sends nothing, or this sees the play and sends ``stop <number>`` on the play's own channel. The player keeps
        a stop for a play it has not started (it never starts it), and a stop names its play, so it never cuts the
        next one."""
        self._stop.set()
        with self._lock:
            current = self._current
        if current is not None:
            player, number = current
            player.stop(number)

    def is_playing(self) -> bool:
        return not self._done.is_set()

    def wait_done(self, timeout: float | None = None) -> bool:
        """Wait until the current warning has finished; False on timeout."""
        return self._done.wait(timeout)

    def close(self) -> None:
        self.stop()
        self._done.wait(5.0)
        with self._lock:
            player, self._player = self._player, None
        if player is not None:
            player.close()

    def _play_all(self, playback: WarningPlayback) -> None:
        """The playback thread's top level."""
        try:
            stuck = self._stuck_plays()
            for index, (path, language, _) in enumerate(self._sounds):
                if self._stop.is_set():
                    break
                if stuck >= MAX_STALLED_PLAYS:
                    reason = f"not tried: {stuck} killed plays are still stuck in the stalled sound device"
                    logger.error("warning %s failed: %s", path.name, reason)
                    playback.finished(language, "failed", reason)
                    continue
                try:
                    stalled = self._play_one(playback, index)
                except Exception as exc:  # this clip's top level: it failed (never "stopped"); the next is tried
                    logger.exception("warning %s failed", path.name)
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
        """How many killed players are still alive (those gone are forgotten)."""
        with self._lock:
            self._stalled = [player for player in self._stalled if player.running]
            return len(self._stalled)

    def _player_ready(self) -> ClipProcess | None:
        """The player for the next clip: the one kept ready, or a new one if it is gone or ``ALSA_CONFIG_PATH``
        changed since it started (None if none can start)."""
        with self._lock:
            player = self._player
            if player is None or not player.alive or player.alsa_config != os.environ.get("ALSA_CONFIG_PATH"):
                if player is not None:
                    player.close()
                try:
                    player = self._player = ClipProcess([path for path, _, _ in self._sounds])
                except OSError:
                    logger.exception("the warning's player could not be started")
                    player = self._player = None
            return player

    def _play_one(self, playback: WarningPlayback, index: int) -> bool:
        """Play clip ``index`` to its end in the player process and report it; a clip that cannot be played is
        ``failed``, never raised. True if the device stalled (the player was killed).

        The outcome is what the player says the clip did, never the stop flag: ``stopped`` only if a stop cut it
        short (it played less than its length less :data:`PLAYED_SLACK_S`, or not at all); a clip that played its
        length is ``played`` even if a stop came at its end."""
        path, language, expected = self._sounds[index]
        player = self._player_ready()
        if player is None:
            playback.finished(language, "failed", "the warning's player process could not be started")
            return False
        with self._lock:  # a stop() sees this play (and stops it) or this sees the stop (and sends nothing)
            if self._stop.is_set():
                playback.finished(language, "stopped")
                return False
            self._plays += 1
            number = self._plays
            self._current = (player, number)
        sent = player.play(number, index)  # a stop(number) sent before it still stops it: the player keeps it
        if not sent:
            with self._lock:
                self._current = None
            playback.finished(language, "failed", "the warning's player process could not be started")
            return False
        began = time.monotonic()
        line = player.read_line(began + OPEN_MAX_S)
        done = line if line is not None and line.startswith("done") else None
        if line == "playing":
            began = time.monotonic()
            if not self._stop.is_set():
                playback.playing(language)
                self._started(path.name)
            deadline = began + expected + STALL_MARGIN_S
            while done is None and time.monotonic() < deadline:
                done = player.read_line(min(deadline, time.monotonic() + 0.1))
                if done is None and not player.alive:
                    break
        elif line is not None and line.startswith("failed"):
            done = player.read_line(time.monotonic() + OPEN_MAX_S)  # its "done"
        lasted = time.monotonic() - began
        with self._lock:
            self._current = None
        stalled = player.alive and (done is None or not done.startswith("done"))
        how, played_s = _done(done, lasted)
        if stalled:
            with self._lock:
                self._player = None
            if not player.kill():
                with self._lock:
                    self._stalled.append(player)
            if line == "playing":
                reason = f"the sound device stalled: still playing {lasted:.2f} s into a {expected:.2f} s clip"
            else:
                reason = f"the sound device stalled: not open after {OPEN_MAX_S:.0f} s"
            logger.error("warning %s failed: %s; its player is killed", path.name, reason)
            playback.finished(language, "failed", reason)
        elif line is not None and line.startswith("failed"):
            reason = line.removeprefix("failed").strip() or "the clip could not be played"
            logger.error("cannot play warning %s: %s", path.name, reason)
            playback.finished(language, "failed", reason)
        elif how is None:
            reason = f"the warning's player ended (status {player.returncode}) before the clip did"
            logger.error("warning %s failed: %s", path.name, reason)
            playback.finished(language, "failed", reason)
        elif played_s >= expected - PLAYED_SLACK_S:  # its whole length played, whatever stop came at its end
            playback.finished(language, "played")
            logger.info("warning %s played (%.2f s of %.2f s)", path.name, played_s, expected)
        elif how == "stopped":
            playback.finished(language, "stopped")
            logger.info("warning %s stopped after %.2f s of %.2f s", path.name, played_s, expected)
        else:
            reason = (
                f"playback ended after {played_s:.2f} s of {expected:.2f} s ({played_s / expected:.0%}; the sound"
                " device stopped taking samples)"
            )
            logger.error("warning %s failed: %s", path.name, reason)
            playback.finished(language, "failed", reason)
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


def _done(line: str | None, lasted: float) -> tuple[str | None, float]:
    """How a play ended by the player's ``done <ended|stopped> <ms>``, and for how many seconds it played (``lasted``,
    as the agent measured it, if the player did not say); ``(None, lasted)`` if it did not say ``done`` so."""
    words = (line or "").split()
    if len(words) < 2 or words[0] != "done" or words[1] not in ("ended", "stopped"):
        return None, lasted
    try:
        return words[1], int(words[2]) / 1000
    except (IndexError, ValueError):
        return words[1], lasted
