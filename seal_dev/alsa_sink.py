"""ALSA's default device as a file, for the real :class:`~seal_agent.devices.speaker.WarningSpeaker` on a machine
without a sound card (the tests, ``make demo``): the samples played land in it, taken no faster than a speaker plays
them (a clip counts as played only if its playback lasted about its duration; ALSA's ``null`` device alone takes a
4 s clip in 50 ms). The pace is kept by a thread of the process that calls :func:`alsa_file_config`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path

#: How fast the sink takes samples: the clips in sounds/ (22050 Hz, mono, 16 bit). A faster clip plays slower.
PCM_BYTES_PER_S = 44100
_CHUNK = 2048


def alsa_file_config(sink: Path) -> Path:
    """Write (next to ``sink``) and return an ALSA config whose default device writes into ``sink`` at a speaker's
    pace: every play's samples, in order (two plays in a row cannot be told apart). Point ``ALSA_CONFIG_PATH`` at it."""
    fifo = sink.with_suffix(".fifo")
    if not fifo.exists():  # else its reader is still there (a seal restarted on the same sink)
        os.mkfifo(fifo)
        threading.Thread(target=_take, args=(fifo, sink), name="alsa-sink", daemon=True).start()
    conf = sink.with_suffix(".conf")
    conf.write_text(f'pcm.!default {{ type file; slave.pcm {{ type null }}; file "{fifo}"; format "raw" }}\n')
    return conf


def _take(fifo: Path, sink: Path) -> None:
    """Read each play's samples from ``fifo`` (a play opens it anew) into ``sink`` at :data:`PCM_BYTES_PER_S`."""
    while True:
        try:
            pipe = os.open(fifo, os.O_RDONLY)  # waits for the next play
        except OSError:  # the test's directory is gone
            return
        with contextlib.suppress(OSError):  # EBUSY: the writer was quicker and already holds more
            fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 4096)  # the writer runs at most this far ahead of the "speaker"
        with os.fdopen(pipe, "rb", buffering=0) as source, sink.open("ab") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
                out.flush()
                time.sleep(len(chunk) / PCM_BYTES_PER_S)
