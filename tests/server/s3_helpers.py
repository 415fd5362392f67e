"""S3 for tests: settings naming the session's private store (:class:`seal_dev.s3.PrivateS3`) under a key prefix of
the test's own, and a relay in front of it that a test can take down and bring back (a dead endpoint, then the same
endpoint alive again), make swallow requests without answering (a black hole), make answer an error for one object
(a damaged object, a busy store), or hold one object's requests until the test lets them go (a request in flight);
it counts the connections and requests that reach it."""

from __future__ import annotations

import io
import secrets
import socket
import threading
from http import HTTPStatus
from pathlib import Path

from seal_dev.broker import free_port
from seal_dev.s3 import PrivateS3
from server.config import Settings
from server.config_storage import StorageSettings
from tests.agent.helpers import wait_until


def s3_settings(
    settings: Settings, store: PrivateS3, tmp_path: Path, *, endpoint_url: str | None = None, **fields: object
) -> Settings:
    """``settings`` with ``[storage] backend = "s3"`` on ``store`` (or ``endpoint_url``), under a fresh key prefix;
    the secret in a file of ``tmp_path``."""
    secret_file = tmp_path / "s3-secret"
    secret_file.write_text(store.secret_access_key + "\n")
    secret_file.chmod(0o600)
    storage = StorageSettings(
        backend="s3",
        endpoint_url=endpoint_url or store.endpoint_url,
        bucket=store.bucket,
        key_prefix=f"test-{secrets.token_hex(6)}/",
        access_key_id=store.access_key_id,
        secret_access_key_file=secret_file,
        **fields,  # type: ignore[arg-type]
    )
    return settings.model_copy(update={"storage": storage})


def no_database(tmp_path: Path) -> str:
    """The URL of a database the test never opens (the store is all it is about)."""
    return f"sqlite:///{tmp_path / 'unused.db'}"


class Relay:
    """Forwards HTTP requests from its own port of 127.0.0.1 to ``target_port`` (0: nothing behind it, for a relay that
    only swallows), while :attr:`mode` is ``"on"``;
    ``"off"``: nothing listens (connections refused) and the open ones are cut; ``"silent"``: connections are taken
    and never answered. It counts what reaches it — :attr:`connections` taken, :attr:`requests` read (``"PUT
    /bucket/key"``; none in ``"silent"``) — and answers a request whose path names a key given to :meth:`fail` with
    an S3 error of its own instead of forwarding it (a store that fails for that one object, or is busy). A request
    whose path names a key given to :meth:`hold` waits, read but neither answered nor forwarded, until released."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.mode = "off"
        self.connections = 0
        self.requests: list[str] = []
        self._faults: dict[str, tuple[int, str]] = {}
        self._holds: dict[str, threading.Event] = {}
        self._server: socket.socket | None = None
        self._held: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        assert mode in ("on", "off", "silent")
        self.mode = mode
        if mode == "off":
            self.close()
        elif self._server is None:
            server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
            server.settimeout(0.2)
            self._server = server
            threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def fail(self, key: str, status: int, code: str) -> None:
        """Answer each request whose path contains ``key`` with ``status`` and an S3 error ``code`` (and close its
        connection); the store never sees it."""
        self._faults[key] = (status, code)

    def hold(self, key: str) -> threading.Event:
        """Keep each request whose path contains ``key`` in flight (counted in :attr:`requests`, then unanswered)
        until the event returned is set; then it is failed or forwarded as any other. It waits ten seconds at most."""
        release = threading.Event()
        self._holds[key] = release
        return release

    def heal(self, key: str) -> None:
        """Forward the requests for ``key`` again."""
        del self._faults[key]

    def connections_at_least(self, count: int, timeout: float) -> int:
        """:attr:`connections` once it has reached ``count`` (or ``timeout`` has passed): a connection is counted
        when the relay's thread takes it, a moment after the client has made it."""
        wait_until(lambda: self.connections >= count, timeout)
        return self.connections

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in self._held:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        self._held.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)  # cut when the relay goes off
            if self.mode != "silent":
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        """Read the requests of one connection, answer the failed ones, and forward the others (their answers flow
        back through :func:`_pipe`)."""
        upstream: socket.socket | None = None
        reader = conn.makefile("rb")
        try:
            while head := _read_head(reader):
                method, path, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
                self.requests.append(f"{method} {path}")
                headers = _headers(head)
                length = int(headers.get("content-length", "0"))
                assert "transfer-encoding" not in headers, "botocore frames its requests by Content-Length"
                held = next((event for key, event in self._holds.items() if key in path), None)
                if held is not None:
                    held.wait(10)
                    if self.mode == "off":  # it went off meanwhile: the request was cut, never forwarded
                        return
                fault = next((f for key, f in self._faults.items() if key in path), None)
                if fault is not None:
                    if headers.get("expect", "").lower() != "100-continue":  # else the body is never sent
                        reader.read(length)
                    _answer_error(conn, method, *fault)
                    return
                if upstream is None:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                    self._held.append(upstream)
                    threading.Thread(target=_pipe, args=(upstream, conn), daemon=True).start()
                upstream.sendall(head)
                _copy(reader, upstream, length)  # (after the store's 100 Continue, if the client waits for one)
        except (OSError, ValueError):  # cut (the relay went off, the store closed the connection)
            pass
        finally:
            reader.close()
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()


def _read_head(reader: io.BufferedReader) -> bytes:
    """A request's line and headers, up to the empty line; ``b""`` once the client has closed the connection."""
    head = b""
    while line := reader.readline(65536):
        head += line
        if line == b"\r\n":
            return head
    return b""


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}


def _copy(reader: io.BufferedReader, sink: socket.socket, length: int) -> None:
    while length > 0:
        chunk = reader.read1(min(length, 65536))
        if not chunk:
            raise ConnectionResetError("the client closed the connection inside a request's body")
        sink.sendall(chunk)
        length -= len(chunk)


def _answer_error(conn: socket.socket, method: str, status: int, code: str) -> None:
    """Answer ``status`` with an S3 error document naming ``code``, then close the connection (after the client has
    read the answer: closing with its bytes unread would reset the connection under it)."""
    body = (
        b""
        if method == "HEAD"
        else (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>failed by the test's relay</Message></Error>"
        ).encode()
    )
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + body)
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(5)
    while conn.recv(65536):  # until the client closes its side
        pass


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        source.settimeout(None)
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
