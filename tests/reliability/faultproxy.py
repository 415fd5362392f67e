"""A fault-injecting TCP proxy on 127.0.0.1 that a test drives: pass, blackhole, reset, heal.

Seals connect to the proxy's port instead of the broker's; every accepted connection gets its own connection to the
upstream port, and bytes are copied both ways while the proxy is in ``PASS`` mode.

- :meth:`FaultProxy.blackhole`: a network partition. Every byte, both ways, is read and dropped; new connections are
  accepted (the TCP handshake succeeds) and then hear nothing. Clients notice only by their own keep-alive.
- :meth:`FaultProxy.reset`: every connection is closed with a TCP RST, and new ones are reset as soon as accepted.
- :meth:`FaultProxy.heal`: back to ``PASS``. A connection that lost bytes carries a broken MQTT stream, so every
  connection open at that moment is reset; the clients reconnect to a healthy path.

The proxy runs an asyncio loop on its own thread; the control methods may be called from any thread and take effect
before they return.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Mode(StrEnum):
    PASS = "pass"
    BLACKHOLE = "blackhole"
    RESET = "reset"


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    broken: bool = False  # bytes were dropped: the stream must never carry data again

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]


@dataclass
class ProxyStats:
    accepted: int = 0
    forwarded_bytes: int = 0
    dropped_bytes: int = 0
    resets: int = 0
    modes: list[str] = field(default_factory=list)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class FaultProxy:
    """``with FaultProxy(upstream_port) as proxy:`` … ``proxy.port`` is where clients connect."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream_port = upstream_port
        self.host = host
        self.port = 0
        self.mode = Mode.PASS
        self.stats = ProxyStats()
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    # -- control (any thread) --------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start_server()).result(10)
        return self

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._close()).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def blackhole(self) -> None:
        self._call(self._set_mode(Mode.BLACKHOLE, reset=False)).result(10)

    def reset(self) -> None:
        self._call(self._set_mode(Mode.RESET, reset=True)).result(10)

    def heal(self) -> None:
        self._call(self._set_mode(Mode.PASS, reset=True)).result(10)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def _call(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    # -- the loop's side --------------------------------------------------------------------------------------

    async def _start_server(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._reset_all()

    async def _set_mode(self, mode: Mode, *, reset: bool) -> None:
        self.mode = mode
        self.stats.modes.append(mode.value)
        if reset:
            self._reset_all()

    def _reset_all(self) -> None:
        for connection in list(self._connections):
            self._reset(connection)

    def _reset(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self.stats.resets += 1
        for writer in connection.writers():
            _abort_with_rst(writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        connection = _Connection(writer)
        self._connections.add(connection)
        if self.mode is Mode.RESET:
            self._reset(connection)
            return
        if self.mode is Mode.PASS:
            try:
                up_reader, connection.upstream = await asyncio.open_connection(self.host, self.upstream_port)
            except OSError:
                self._reset(connection)
                return
            if connection not in self._connections:  # reset while we were connecting
                self._reset(connection)
                return
            await asyncio.gather(
                self._pump(reader, connection.upstream, connection),
                self._pump(up_reader, writer, connection),
            )
        else:  # a blackhole: the handshake succeeded, nothing ever comes back
            connection.broken = True
            await self._pump(reader, None, connection)
        self._reset(connection)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter | None, connection: _Connection
    ) -> None:
        try:
            while data := await source.read(65536):
                if self.mode is Mode.PASS and not connection.broken and sink is not None:
                    sink.write(data)
                    await sink.drain()
                    self.stats.forwarded_bytes += len(data)
                else:
                    connection.broken = True
                    self.stats.dropped_bytes += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self._reset(connection)
