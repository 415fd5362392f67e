"""Plays the warning clips through simpleaudio in a process of its own: ``python -I clip_player.py <wav> …``.

:class:`~seal_agent.devices.speaker.WarningSpeaker` keeps one such process ready (the clips loaded, simpleaudio
imported, so a warning starts as fast as in the agent itself), so that a sound device that blocks can hold only this
process, never the seal: simpleaudio opens the device holding the interpreter's lock (an open that blocks would
freeze every thread of the agent), and its playback thread cannot be stopped while a write blocks (a wedged device
would keep it, and the device's handle, for good). This process can be killed, and the device's handle goes with it.

It reads commands on stdin, one a line: ``play <index>`` plays that clip (of its arguments) and answers ``playing``
once simpleaudio accepted the samples (the device is open and being written) or ``failed <reason>``, then ``done``
when the playback is over. SIGUSR1 stops the clip playing. It exits at the end of stdin (the agent is gone). It
imports nothing of the seal (it runs with ``-I``).
"""

from __future__ import annotations

import signal
import sys
import time
import wave
from types import FrameType
from typing import Any


def main(argv: list[str]) -> int:
    import simpleaudio
    from simpleaudio._simpleaudio import SimpleaudioError

    sounds = [simpleaudio.WaveObject.from_wave_file(path) for path in argv[1:]]
    state: dict[str, Any] = {"play": None, "stop": False}

    def stop(signum: int, frame: FrameType | None) -> None:
        state["stop"] = True
        if state["play"] is not None:
            state["play"].stop()

    signal.signal(signal.SIGUSR1, stop)
    for command in sys.stdin:
        state["stop"] = False  # a stop for an earlier clip was handled before this line was read
        try:
            state["play"] = sounds[int(command.split()[1])].play()
        except (SimpleaudioError, OSError, EOFError, wave.Error, IndexError, ValueError) as exc:
            _say(f"failed {' '.join(str(exc).split())}")
            _say("done")
            continue
        if state["stop"]:  # the stop came between the command and the play
            state["play"].stop()
        _say("playing")
        while state["play"].is_playing():
            time.sleep(0.01)
        state["play"] = None
        _say("done")
    return 0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
