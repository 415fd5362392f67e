"""Plays the warning clips through simpleaudio in a process of its own: ``python -I clip_player.py <wav> …``.

:class:`~seal_agent.devices.speaker.WarningSpeaker` keeps one such process ready (the clips loaded, simpleaudio
imported, so a warning starts as fast as in the agent itself), so that a sound device that blocks can hold only this
process, never the seal: simpleaudio opens the device holding the interpreter's lock (an open that blocks would
freeze every thread of the agent), and its playback thread cannot be stopped while a write blocks (a wedged device
would keep it, and the device's handle, for good). This process can be killed, and the device's handle goes with it.

It reads commands on stdin, one a line, in order; every play has a number ``<n>`` the agent gives it (growing):

- ``play <n> <index>`` plays that clip (of its arguments). The answer is ``playing`` once simpleaudio accepted the
  samples (the device is open and being written) or ``failed <reason>``, then, when the playback is over,
  ``done ended <ms>`` (it ended by itself after ``<ms>`` milliseconds of playing) or ``done stopped <ms>`` (a stop cut
  it after ``<ms>``; ``done stopped 0`` without ``playing`` when the stop came before it started: nothing played),
  or a bare ``done`` after ``failed``.
- ``stop <n>`` stops play ``<n>``: the one playing, or, if it has not started yet, before it starts. It is sent on
  the same channel as the play, after it, so a stop is never lost and never wiped; a stop for another play (an
  earlier one, already over) changes nothing, so it can never cut the next clip.

Before a play starts, and every 10 ms while it plays, every line already sent is read. It exits at the end of stdin
(the agent is gone: killed, crashed), stopping a clip playing, and quietly when its answers find no reader (the same
end, seen first on stdout), so a killed agent leaves neither a player nor a traceback behind. It imports nothing of
the seal (it runs with ``-I``).
"""

from __future__ import annotations

import os
import select
import sys
import time
import wave

_POLL_S = 0.01


class _Commands:
    """The lines on stdin, read without blocking past a deadline (a play keeps reading its stops)."""

    def __init__(self) -> None:
        self._buffer = b""
        self.eof = False
        self.plays: list[tuple[int, int]] = []  # (n, index) read, not yet started
        self.stops: set[int] = set()  # stops read for plays not yet over

    def read(self, timeout: float) -> None:
        """Read every line available within ``timeout`` seconds (0: only those already sent); after the end of stdin,
        just wait ``timeout``."""
        if self.eof:
            time.sleep(timeout)
        while not self.eof:
            ready, _, _ = select.select([0], [], [], timeout)
            if not ready:
                return
            chunk = os.read(0, 4096)
            if not chunk:
                self.eof = True
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                self._take(line.decode(errors="replace").split())
            timeout = 0.0

    def _take(self, words: list[str]) -> None:
        try:
            if len(words) == 3 and words[0] == "play":
                self.plays.append((int(words[1]), int(words[2])))
            elif len(words) == 2 and words[0] == "stop":
                self.stops.add(int(words[1]))
            else:
                raise ValueError
        except ValueError:  # said on stderr: stdout answers plays only
            sys.stderr.write(f"clip player: bad command {' '.join(words)!r} ignored\n")


class _AgentGone(Exception):
    """The agent no longer reads the answers: it is gone."""


def main(argv: list[str]) -> int:
    try:
        return _serve(argv)
    except _AgentGone:
        return 0


def _serve(argv: list[str]) -> int:
    import simpleaudio
    from simpleaudio._simpleaudio import SimpleaudioError

    sounds = [simpleaudio.WaveObject.from_wave_file(path) for path in argv[1:]]
    commands = _Commands()
    while True:
        while not commands.plays and not commands.eof:
            commands.read(3600.0)
        if commands.eof:  # the agent is gone: nothing more is played
            return 0
        number, index = commands.plays.pop(0)
        commands.read(0.0)  # a stop already sent for it is seen before it starts
        if number in commands.stops:
            commands.stops.discard(number)
            _say("done stopped 0")
            continue
        try:
            play = sounds[index].play()
        except (SimpleaudioError, OSError, EOFError, wave.Error, IndexError) as exc:
            _say(f"failed {' '.join(str(exc).split())}")
            _say("done")
            continue
        began = time.monotonic()
        _say("playing")
        how = "ended"
        while play.is_playing():
            commands.read(_POLL_S)
            if how == "ended" and (number in commands.stops or commands.eof):
                how = "stopped"
                play.stop()  # simpleaudio's thread ends at its next write: wait for it (the device is then closed)
        ms = round((time.monotonic() - began) * 1000)
        commands.stops = {n for n in commands.stops if n > number}  # those for plays over are spent
        _say(f"done {how} {ms}")


def _say(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # nothing will read it: the rest of the output goes nowhere, and the player ends
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise _AgentGone from None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
