"""The agent's side of a :mod:`~seal_agent.devices.clip_player` process: start it, send it ``play <n> <index>``, read
its answers with a deadline, send it ``stop <n>``, kill it. Used by the playback thread of
:class:`~seal_agent.devices.speaker.WarningSpeaker` only (``stop`` and ``kill`` from any thread)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from seal_agent.devices import clip_player


class ClipProcess:
    """One clip player process, ready to play ``files`` by their index."""

    def __init__(self, files: Sequence[Path]) -> None:
        #: The ALSA configuration it runs with (ALSA reads ``ALSA_CONFIG_PATH`` when it opens a device).
        self.alsa_config = os.environ.get("ALSA_CONFIG_PATH")
        self._process = subprocess.Popen(
            [sys.executable, "-I", clip_player.__file__, *map(str, files)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # ALSA's own messages go where the agent's do
            bufsize=0,
        )
        self._buffer = b""
        self._eof = False
        self._write_lock = threading.Lock()  # a play's line and a stop's line never interleave

    @property
    def alive(self) -> bool:
        """Still running, and its output not ended (a process whose output ended is exiting)."""
        return not self._eof and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def play(self, number: int, index: int) -> bool:
        """Ask for clip ``index`` as play ``number`` (a stop names it); False if the process is gone."""
        return self._send(f"play {number} {index}")

    def read_line(self, deadline: float) -> str | None:
        """Its next answer, or None if it said nothing by ``deadline`` (monotonic) or its output ended."""
        assert self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                self._eof = True
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def stop(self, number: int) -> None:
        """Stop play ``number`` (sent after its ``play``): cut short if it is playing, never started if it has not
        started yet, nothing if it is over. It still answers ``done``."""
        self._send(f"stop {number}")

    def _send(self, line: str) -> bool:
        assert self._process.stdin is not None
        with self._write_lock:
            try:
                self._process.stdin.write(f"{line}\n".encode())
            except (OSError, ValueError):  # BrokenPipeError: it died; ValueError: closed
                return False
        return True

    def kill(self, wait_s: float = 1.0) -> bool:
        """Kill it; True once it is gone (within ``wait_s``), False if it is stuck where a kill cannot reach."""
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(wait_s)
        if self._process.poll() is None:
            return False
        self.close()
        return True

    def close(self) -> None:
        """Close its pipes (it exits at the end of its stdin) and reap it if it has exited."""
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1.0)

    @property
    def running(self) -> bool:
        """The process has not exited (killed or not)."""
        return self._process.poll() is None

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self._process.poll() is None:
                self._process.send_signal(signum)
