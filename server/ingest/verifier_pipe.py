"""The two OS pipes between the ingest and its verifier process (:mod:`server.ingest.verifier`): length-prefixed
frames both ways. The ingest's ends never block: it writes and reads with deadlines, so a process that is stuck —
stopped half-way through a frame, or reading nothing more — cannot hold the ingest; and whenever a write waits for
room, the frames that come back meanwhile are read, so that neither side is left waiting for the other with both
pipes full (a chunk's answers are larger than a pipe holds). The process's ends block: it has nothing else to do."""

from __future__ import annotations

import os
import select
import struct
import time
from collections import deque

#: The length of a frame, before its bytes.
FRAME = struct.Struct("!I")
#: Read at most this much at once from the process.
READ_SIZE = 1 << 16
#: The largest frame taken from the process: the answers to a chunk of the largest events the protocol admits
#: (64 × two copies of 64 KB), with room. A longer one is refused, not read (a process that lies about it).
MAX_FRAME = 32 << 20


class Pipe:
    """Both directions to a verifier process. :meth:`send_bytes` gives up at its deadline; :meth:`poll` waits for a
    whole frame from the process at most its timeout, and :meth:`recv_bytes` takes it."""

    def __init__(self, to_process: int, from_process: int) -> None:
        for fd in (to_process, from_process):
            os.set_blocking(fd, False)  # these ends only: the process reads and writes its own ends blocking
        self._to_fd: int | None = to_process
        self._from_fd: int | None = from_process
        self._received = bytearray()  # bytes read, not yet a whole frame
        self._inbox: deque[bytes] = deque()  # whole frames, oldest first
        self._ended = False  # the process closed its end (or is gone)
        self._waiting = select.poll()
        self._waiting.register(to_process, select.POLLOUT)
        self._waiting.register(from_process, select.POLLIN)
        self._readable = select.poll()
        self._readable.register(from_process, select.POLLIN)

    @property
    def closed(self) -> bool:
        return self._to_fd is None

    def send_bytes(self, data: bytes, timeout: float) -> None:
        """Write one frame; raise :class:`TimeoutError` if the process has not taken it all within ``timeout``,
        :class:`OSError` if the pipe is closed or broken. Frames from the process that come meanwhile are kept."""
        frame = memoryview(FRAME.pack(len(data)) + data)
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = frame[os.write(self._fd(self._to_fd), frame) :]
            except BlockingIOError:
                pass
            if not frame:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the verifier process took nothing for {timeout:g} s")
            if any(fd == self._from_fd for fd, _ in self._waiting.poll(left * 1000)):
                self._read()

    def poll(self, timeout: float) -> bool:
        """Whether a whole frame from the process (or its end) is there, waiting for one at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._inbox and not self._ended:
            left = deadline - time.monotonic()
            if self._readable.poll(max(0.0, left) * 1000):
                self._read()
                if not self._inbox and not self._ended and time.monotonic() >= deadline:
                    return False  # a process that keeps writing, never a whole frame, holds no longer either
            elif left <= 0:
                return False
        return True

    def recv_bytes(self) -> bytes:
        """The oldest frame from the process that :meth:`poll` found; :class:`EOFError` once none will come."""
        if self._inbox:
            return self._inbox.popleft()
        raise EOFError("the verifier process ended its answers")

    def _read(self) -> None:
        """Take what the process has written, without waiting; whole frames go to the inbox."""
        try:
            while chunk := os.read(self._fd(self._from_fd), READ_SIZE):
                self._received += chunk
            self._ended = True  # b"": the process's end is closed
        except BlockingIOError:
            pass
        while len(self._received) >= FRAME.size:
            (size,) = FRAME.unpack_from(self._received)
            if size > MAX_FRAME:
                raise ValueError(f"a frame of {size} bytes from the verifier process, limit {MAX_FRAME}")
            if len(self._received) < FRAME.size + size:
                break
            self._inbox.append(bytes(self._received[FRAME.size : FRAME.size + size]))
            del self._received[: FRAME.size + size]

    @staticmethod
    def _fd(fd: int | None) -> int:
        if fd is None:
            raise OSError("the pipe to the verifier process is closed")
        return fd

    def close(self) -> None:
        for fd in (self._to_fd, self._from_fd):
            if fd is not None:
                os.close(fd)
        self._to_fd = self._from_fd = None
        self._ended = True

    def __del__(self) -> None:
        self.close()


def write_frame(fd: int, data: bytes) -> None:
    """Write one frame on ``fd`` (the process's end, blocking)."""
    frame = memoryview(FRAME.pack(len(data)) + data)
    while frame:
        frame = frame[os.write(fd, frame) :]


def read_frame(fd: int) -> bytes | None:
    """The next frame written on ``fd`` (the process's end, blocking); None at the end (the ingest closed its end)."""
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
