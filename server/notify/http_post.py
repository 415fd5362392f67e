"""One webhook ``POST`` with a hard deadline: :func:`post`.

``timeout_s`` bounds the whole request — resolving the name, connecting, TLS, sending, reading the status line and
the headers — not each socket operation: a receiver answering one byte at a time is cut off at the deadline (a
watchdog shuts the socket down, which wakes a read under way in another thread) like one that does not answer. The
request goes to the address :func:`server.notify.addresses.resolve_target` checked, never to one the name resolves
to later; TLS still verifies the certificate against the URL's host name. The answer's body is not read.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from server.notify.addresses import AddressPolicy, resolve_target


class DeadlinePassed(TimeoutError):
    """The receiver did not answer within the request's deadline."""


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float, policy: AddressPolicy) -> int:
    """POST ``body`` to ``url``; the answer's status. Raise ``ValueError`` for a URL that is not http(s)://host,
    :class:`server.notify.addresses.RefusedAddress` for a host webhooks must not go to, :class:`DeadlinePassed`
    past ``timeout_s``, ``OSError`` or ``http.client.HTTPException`` when the receiver cannot be reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s)://host/… URL")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)  # ValueError for a port out of range
    deadline = time.monotonic() + timeout_s
    try:
        address = resolve_target(parts.hostname, port, policy, deadline=deadline)
        sock = socket.create_connection((address, port), timeout=_left(deadline))
    except TimeoutError:
        raise DeadlinePassed(f"no answer within {timeout_s:g} s") from None
    watchdog = _Watchdog(sock, deadline - time.monotonic())
    try:
        if https:
            tls = ssl.create_default_context().wrap_socket(
                sock, server_hostname=parts.hostname, do_handshake_on_connect=False
            )
            watchdog.sock = tls
            tls.do_handshake()
            sock = tls
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection  # its default port for Host
        connection = kind(parts.hostname, port, timeout=timeout_s)
        connection.sock = sock  # already connected: http.client does not connect again
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", path, body, dict(headers))
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException):
        if watchdog.fired:
            raise DeadlinePassed(f"no answer within {timeout_s:g} s") from None
        raise
    finally:
        watchdog.cancel()
        sock.close()
    if watchdog.fired:  # cut off just as the answer ended
        raise DeadlinePassed(f"no answer within {timeout_s:g} s")
    return status


class _Watchdog:
    """Shuts ``sock`` (whichever socket is current) down after ``after_s``: shutdown, unlike close, wakes a read or
    write under way in another thread."""

    def __init__(self, sock: socket.socket, after_s: float) -> None:
        self.sock = sock
        self.fired = False
        self._timer = threading.Timer(max(after_s, 0.0), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def _cut(self) -> None:
        self.fired = True
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # not SSLSocket's: it unwraps
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed("the deadline passed")
    return left
