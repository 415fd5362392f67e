"""S3 for tests: settings naming the session's private store (:class:`seal_dev.s3.PrivateS3`) under a key prefix of
the test's own, and a TCP relay in front of it that a test can take down and bring back (a dead endpoint, then the
same endpoint alive again), or make swallow requests without answering (a black hole)."""

from __future__ import annotations

import secrets
import socket
import threading
from pathlib import Path

from seal_dev.broker import free_port
from seal_dev.s3 import PrivateS3
from server.config import Settings
from server.config_storage import StorageSettings


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


class Relay:
    """Forwards TCP connections from its own port of 127.0.0.1 to ``target``'s, while :attr:`mode` is ``"on"``;
    ``"off"``: nothing listens (connections refused) and the open ones are cut; ``"silent"``: connections are taken
    and never answered."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.mode = "off"
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
            if self.mode == "silent":
                self._held.append(conn)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                conn.close()
                continue
            self._held += [conn, upstream]  # cut when the relay goes off
            for source, sink in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    source.settimeout(None)
    try:
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
