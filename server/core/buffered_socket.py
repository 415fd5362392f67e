"""A socket that reads the broker's stream in large pieces and hands paho its packets out of memory.

paho reads an MQTT packet with one ``recv`` for its first byte, one per byte of its length and one or more for the
rest, and goes back to ``select`` after each packet: four or five system calls and a pass through its loop for every
600-byte event, where one ``recv`` of 64 KiB holds a hundred of them. :class:`BufferedSocket` serves paho's small
reads from what one large read brought; paho's loop asks :meth:`BufferedSocket.pending` (as it asks a TLS socket)
and does not wait in ``select`` while bytes are held. Measured by ``bench/mqtt_client.py`` and ``bench/ingest.py``
(``docs/benchmarks.md``, fourteenth round).

Only ``recv`` and ``pending`` are its own; everything else (``send``, ``fileno`` for ``select``, ``setblocking``,
``close``, ``setsockopt``) is the wrapped socket's. paho's error handling is unchanged: a read that would block
raises as the wrapped socket raises (``BlockingIOError``, ``ssl.SSLWantReadError``), an end of stream is ``b""``.
"""

from __future__ import annotations

from typing import Any

#: One read from the kernel (or from TLS, which hands out at most a record of 16 KiB at a time).
READ_SIZE = 64 * 1024


class BufferedSocket:
    """``sock`` (a connected, non-blocking TCP or TLS socket) with its reads buffered."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._held = b""
        self._at = 0

    def recv(self, bufsize: int) -> bytes:
        if self._at >= len(self._held):
            self._held, self._at = self._sock.recv(READ_SIZE), 0  # raises, as paho expects, when nothing is there
            if not self._held:
                return b""  # the broker closed the connection
        piece = self._held[self._at : self._at + bufsize]
        self._at += len(piece)
        return piece

    def pending(self) -> int:
        """Bytes that can be read without waiting: those held here and those TLS has decrypted but not handed out."""
        inner = getattr(self._sock, "pending", None)
        return len(self._held) - self._at + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
