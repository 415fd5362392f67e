"""Two small pieces of the seal's MQTT connection at the socket: why a connection attempt failed, and the socket
option that sends an event at once (:mod:`seal_agent.mqtt`)."""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

import paho.mqtt.client as mqtt


def connect_error() -> str:
    """Why the connection attempt failed: paho calls ``on_connect_fail`` inside its ``except OSError`` around the
    attempt, so the error being handled is the reason (refused, no route, unknown host, TLS, timeout)."""
    error = sys.exc_info()[1]
    if error is None:
        return "the connection failed"
    return str(error) or type(error).__name__


def send_at_once(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open``: TCP_NODELAY, so that an intrusion event is sent at once rather than held by
    Nagle's algorithm until the broker acknowledges the seal's previous packet (up to its 40 ms delayed ACK)."""
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket: nothing to do
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
