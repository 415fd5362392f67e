"""ALSA's default device as a file, for the real :class:`~seal_agent.devices.speaker.WarningSpeaker` on a machine
without a sound card (the tests, ``make demo``): the samples played land in it, taken no faster than a speaker plays
them (a clip counts as played only if its playback lasted about its duration; ALSA's ``null`` device alone takes a
4 s clip in 50 ms). The pace is kept by a thread of the process that calls :func:`alsa_file_config`.

ALSA's ``file`` plugin writes into a named pipe that this process holds open for reading *and* writing from the
start: a play never waits for a reader to open it (simpleaudio opens the device holding the interpreter's lock, so a
blocked open would freeze the whole seal), the pipe's buffer is made small before any play fills it (else the first
play runs 64 KiB ahead of the "speaker"), and the reader never sees an end between two plays. A sink file that
cannot be written is drained all the same."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: How fast the sink takes samples: the clips in sounds/ (22050 Hz, mono, 16 bit). A faster clip plays slower.
PCM_BYTES_PER_S = 44100
_CHUNK = 2048
#: The pipe's buffer: how far a play runs ahead of the "speaker" (about 46 ms).
_PIPE_BYTES = 4096

_lock = threading.Lock()
_readers: set[Path] = set()  # the pipes this process reads


def alsa_file_config(sink: Path) -> Path:
    """Write (next to ``sink``) and return an ALSA config whose default device writes into ``sink`` at a speaker's
    pace: every play's samples, in order (two plays in a row cannot be told apart). Point ``ALSA_CONFIG_PATH`` at it."""
    fifo = sink.with_suffix(".fifo")
    with _lock:
        if fifo not in _readers:  # else this process reads it already (a seal restarted on the same sink)
            if not fifo.exists():
                os.mkfifo(fifo)
            pipe = os.open(fifo, os.O_RDWR)  # a reader from now on; and no end between two plays
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            threading.Thread(target=_take, args=(pipe, sink), name="alsa-sink", daemon=True).start()
            _readers.add(fifo)
    conf = sink.with_suffix(".conf")
    conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{fifo}"; format "raw" }}\n')
    return conf


def _take(pipe: int, sink: Path) -> None:
    """Move what the plays write into ``pipe`` to ``sink``, at :data:`PCM_BYTES_PER_S`, for the process's life."""
    broken = False
    while True:
        chunk = os.read(pipe, _CHUNK)
        try:
            with sink.open("ab") as out:
                out.write(chunk)
        except OSError as exc:  # drained all the same: a play must never wait for a reader that is gone
            if not broken:
                logger.error("the speaker's sink %s cannot be written (%s): its samples are dropped", sink, exc)
            broken = True
        time.sleep(len(chunk) / PCM_BYTES_PER_S)
