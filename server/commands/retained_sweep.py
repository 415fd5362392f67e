"""Retained messages on the seals' ``cmd`` and ``receipt`` topics: the court clears them at every connection.

Only the court's account may write those topics (:func:`server.seals.broker_files.acl_text`), and the court never
retains a command or a receipt; but a retained message there (a ``mosquitto_pub -r`` with the court's account, a
bug) would be handed to the seal at every connect, since the seal subscribes again each time. The seal takes no
command from a retained message (:mod:`seal_agent.mqtt_commands`); the court deletes it.

So, at each connection, the command publisher subscribes to every seal's ``cmd`` and ``receipt`` topics (QoS 0,
*No Local*: not its own commands; *Retain As Published*; the retained messages sent at the subscription) and drops
the subscription as soon as the broker granted it: the broker hands a subscription its retained messages right after
granting it, before it reads the unsubscription. Each message that comes retained with a payload is cleared (an
empty retained publish, QoS 1), logged and counted like the ingest's clears (``seal_retained_cleared{result}``,
:mod:`server.ingest.retained`); everything else (a deletion, another court process's live receipt) is ignored.
"""

from __future__ import annotations

import logging
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from seal_protocol import MessageKind, subscription_all
from server.core.metrics import IngestMetrics
from server.core.mqtt import clear_retained

logger = logging.getLogger(__name__)

#: The seals' topics only the court writes, never retained.
SWEPT_KINDS = (MessageKind.CMD, MessageKind.RECEIPT)


class RetainedSweep:
    """Clears retained messages on the seals' ``cmd`` and ``receipt`` topics through a court client: call
    :meth:`start` at each connection, and hand it the client's SUBACKs, messages and PUBACKs (paho's thread)."""

    def __init__(self, metrics: IngestMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._subscribe_mid: int | None = None
        self._pending: dict[int, str] = {}  # packet id of a clear → its topic

    @staticmethod
    def topics() -> list[str]:
        return [subscription_all(kind) for kind in SWEPT_KINDS]

    def start(self, client: mqtt.Client) -> None:
        options = SubscribeOptions(
            qos=0, noLocal=True, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE
        )
        _rc, mid = client.subscribe([(topic, options) for topic in self.topics()])
        with self._lock:
            self._subscribe_mid = mid

    def subscribed(self, client: mqtt.Client, mid: int, codes: list[ReasonCode]) -> bool:
        """The broker's SUBACK ``mid``: True if it was the sweep's (then unsubscribed again)."""
        with self._lock:
            if mid != self._subscribe_mid:
                return False
            self._subscribe_mid = None
        refused = [f"{topic}: {code}" for topic, code in zip(self.topics(), codes, strict=False) if code.is_failure]
        if refused:
            logger.error(
                "the broker refused the court's look at retained messages on %s: the court's account may not read "
                "the seals' cmd and receipt topics — an ACL from before this version; run seal-server broker "
                "write-files",
                ", ".join(refused),
            )
        client.unsubscribe(self.topics())
        return True

    def received(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> None:
        """A message on a swept topic: cleared if it came retained with a payload, else ignored."""
        if not message.retain or not message.payload:
            return
        topic = message.topic
        logger.warning(
            "a retained message on %r (%d bytes): clearing it (the court never retains a command or a receipt)",
            topic,
            len(message.payload),
        )
        with self._lock:
            mid = clear_retained(client, topic)
            if mid is not None:
                self._pending[mid] = topic
        if mid is None:
            self._metrics.count_retained_cleared("unsent")
            logger.error("could not send the clearing of %r (no connection): it is cleared after the next one", topic)

    def published(self, mid: int, reason_code: ReasonCode) -> bool:
        """The broker's PUBACK ``mid``: True if it was for a clear (counted)."""
        with self._lock:
            topic = self._pending.pop(mid, None)
        if topic is None:
            return False
        if reason_code.is_failure:
            self._metrics.count_retained_cleared("refused")
            logger.error("the broker refused to clear the retained message on %r: %s", topic, reason_code)
        else:
            self._metrics.count_retained_cleared("cleared")
        return True
