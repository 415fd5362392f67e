"""The court's commands as the seal's MQTT connection takes them: one at a time, each acknowledged to the broker
(paho's ``manual_ack``) only once ``on_command`` has returned, i.e. once the seal has committed its answer.

A command whose handler raises (the action failed, or its answer could not be committed for now: a full disk) stays
unacknowledged (an answer that can never be recorded does not raise: its ``event_lost`` stands in its place), and so
does every later command on that connection: none is handed to ``on_command``, since a later id accepted first would
make the seal refuse the earlier one as ``replayed`` when it came again. The broker delivers unacknowledged messages
again only on a new connection of the persistent session, so this connection is then dropped after a back-off — 2 s
after the first failure, doubling with each failure in a row up to 5 min, and back to 2 s once a command is answered —
during which events and receipts keep flowing (a receipt is what makes room on a full disk). Dropping it is shutting its
socket down: paho's "connection lost", which it reconnects after with the publisher's usual back-off; the broker then
delivers the commands again in the order it first sent them, the failed one first. A crash has the same effect. A
command is never consumed without an answer or, if none can ever be recorded, its ``event_lost``.

The court never retains a command (and clears what it finds retained on a seal's ``cmd`` topic,
:mod:`server.ingest.retained`): a message the broker delivers with the RETAIN flag — a retained message handed to the
seal's subscription, made again at every connect — is no command. It is acknowledged without being handed to the
handler, so no signed event answers it (one ``command_rejected`` per reconnect, forever, otherwise); it is logged once
per connection and counted (:attr:`CommandInbox.retained_ignored`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

import paho.mqtt.client as mqtt

from seal_agent.errors import SealStopping
from seal_agent.interfaces import CommandHandler

logger = logging.getLogger(__name__)

#: A connection on which a command went unanswered is dropped this long after the first such failure (s), the delay
#: doubling with each failure in a row up to :data:`COMMAND_RETRY_MAX_S`.
COMMAND_RETRY_MIN_S = 2.0
COMMAND_RETRY_MAX_S = 300.0


class CommandInbox:
    """Delivers the commands of ``client``'s connection to their handler; tell it of every connection made or lost
    (:meth:`new_connection`), and :meth:`close` it when the seal stops."""

    def __init__(self, client: mqtt.Client, url: str) -> None:
        self._client = client
        self._url = url
        self._lock = threading.Lock()
        self._connection = 0  # counts connections made and lost: a renewal is for the connection it was planned on
        self._unanswered: int | None = None  # mid of this connection's first command left unanswered
        self._failures = 0  # commands left unanswered in a row (the renewal's back-off)
        self._renewal: threading.Timer | None = None
        self._closed = False
        self.retained_ignored = 0  # messages delivered retained, taken as no command
        self._retained_logged = False  # on this connection

    def deliver(self, handler: CommandHandler, message: mqtt.MQTTMessage) -> None:
        """On paho's network thread: hand ``message`` to ``handler`` and acknowledge it once that returned."""
        if message.retain:
            self._ignore_retained(message)
            return
        if self._unanswered is not None:
            logger.info(
                "command (mid %d) not taken: command (mid %d) is still unanswered; the broker delivers both again",
                message.mid,
                self._unanswered,
            )
            return
        try:
            handler(bytes(message.payload))
        except SealStopping:
            logger.info("command (mid %d) not taken: the seal is stopping; the broker delivers it again", message.mid)
            return
        except Exception:  # paho's network thread: a failing command must not kill the connection
            delay = self._plan_renewal(message.mid)
            logger.exception(
                "command (mid %d) not answered; it and every later command stay unacknowledged until the connection "
                "is renewed in %.0f s, when the broker delivers them again",
                message.mid,
                delay,
            )
            return
        self._failures = 0
        self._client.ack(message.mid, message.qos)

    def _ignore_retained(self, message: mqtt.MQTTMessage) -> None:
        """A retained message: no command (the court never retains one); acknowledged, answered by nothing."""
        self.retained_ignored += 1
        if not self._retained_logged:
            self._retained_logged = True
            logger.warning(
                "ignoring a retained message on %s (%d bytes): the court never retains a command, so it is not taken "
                "as one (the court clears it)",
                message.topic,
                len(message.payload),
            )
        self._client.ack(message.mid, message.qos)

    def new_connection(self) -> None:
        """A connection was made or lost: commands are taken again, and no renewal is due."""
        self._cancel_renewal()
        with self._lock:
            self._connection += 1
            self._unanswered = None
            self._retained_logged = False

    def close(self) -> None:
        """The seal stops: no renewal any more."""
        with self._lock:
            self._closed = True
        self._cancel_renewal()

    def _plan_renewal(self, mid: int) -> float:
        """Take no more commands on this connection and drop it after the back-off; return the back-off."""
        self._failures += 1
        delay = min(COMMAND_RETRY_MAX_S, COMMAND_RETRY_MIN_S * 2 ** min(self._failures - 1, 16))
        with self._lock:
            self._unanswered = mid
            timer = threading.Timer(delay, self._renew, args=(self._connection,))
            timer.daemon = True
            self._renewal = timer
        timer.start()
        return delay

    def _renew(self, connection: int) -> None:
        """Drop the connection ``connection`` if it still stands (``disconnect()`` would end paho's loop)."""
        with self._lock:
            sock = self._client.socket() if connection == self._connection and not self._closed else None
            if not isinstance(sock, socket.socket):  # gone already (or a websocket, which paho closes itself)
                return
            logger.warning("dropping the connection to %s to have the unanswered command delivered again", self._url)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _cancel_renewal(self) -> None:
        with self._lock:
            timer, self._renewal = self._renewal, None
        if timer is not None:
            timer.cancel()
