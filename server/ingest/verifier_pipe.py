"""The two OS pipes between the ingest and its verifier process (:mod:`server.ingest.verifier`): frames to the
process written without blocking, :mod:`multiprocessing.connection` messages back."""

from __future__ import annotations

import os
import select
import struct
import time
from multiprocessing.connection import Connection


class Pipe:
    """Both directions to a verifier process, on two OS pipes. To it: length-prefixed frames written without
    blocking (:meth:`send_bytes` gives up at its deadline, so a process that reads nothing more cannot hold the
    ingest); from it: :mod:`multiprocessing.connection` messages, read with :meth:`poll`'s timeout."""

    def __init__(self, to_process: int, from_process: Connection) -> None:
        os.set_blocking(to_process, False)  # this end only: the process reads its own end blocking
        self._to_end = Connection(to_process, readable=False)  # owns the descriptor: closed once, or when dropped
        self._from = from_process
        self._writable = select.poll()
        self._writable.register(to_process, select.POLLOUT)

    def send_bytes(self, data: bytes, timeout: float) -> None:
        """Write one frame; raise :class:`TimeoutError` if the process has not taken it all within ``timeout``."""
        frame = memoryview(FRAME.pack(len(data)) + data)
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = frame[os.write(self._to_end.fileno(), frame) :]  # OSError once closed
            except BlockingIOError:
                pass
            if not frame:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the verifier process took no checks for {timeout:g} s")
            self._writable.poll(left * 1000)

    def poll(self, timeout: float) -> bool:
        return self._from.poll(timeout)

    def recv_bytes(self) -> bytes:
        return self._from.recv_bytes()

    def close(self) -> None:
        self._to_end.close()
        self._from.close()


#: The length of a frame to the verifier process.
FRAME = struct.Struct("!I")


def read_frame(fd: int) -> bytes | None:
    """The next frame the ingest wrote on ``fd``; None at the end (the ingest closed its end)."""
    header = read_exactly(fd, FRAME.size)
    if header is None:
        return None
    (size,) = FRAME.unpack(header)
    return read_exactly(fd, size)


def read_exactly(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        part = os.read(fd, left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
