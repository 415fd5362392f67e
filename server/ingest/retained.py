"""Retained messages on a seal's ``event`` and ``snapshot`` topics: the ingest clears each one it sees.

A seal retains one message: its ``status`` (``online``, and ``offline`` as its Last Will). Its account may write its
``event`` topic and any ``snapshot/<x>`` below it (Mosquitto's ACL cannot say "one level, never retained"), and
Mosquitto keeps a retained message on every topic that has one, in memory and in its persistence file, and hands
each to every new subscription: one account could make the broker keep 8 MiB per topic it names, without bound
(``retain_available`` is global in Mosquitto 2.0: off, it would also refuse the statuses and the Last Will).

So the court clears them: its account may write every seal's ``event`` and ``snapshot`` topics
(:func:`server.seals.broker_files.acl_text`); the ingest subscribes to them with *Retain As Published* (a message
published retained comes with its RETAIN flag) and asks for the retained messages at every subscription (so those
left from before, or while the court was away, come too); each message that comes retained with a payload is
handled as any other — a valid event is stored, a bad one quarantined — and its retained copy is deleted at once
(an empty retained publish, QoS 1), logged and counted (``seal_retained_cleared{result}``: ``cleared``, ``refused``
by the broker — an ACL from before this — or ``unsent``). Deleting the copy loses nothing: the message reached the
court's session like any other, and a seal keeps every event and snapshot until the court's receipt.

The broker passes a deletion on to the subscribers as an empty retained message: that one is the broker's word that
nothing is retained there any more, not a message of the seal's, so it is acknowledged without being stored
(counted as ``seal_messages_ignored``), never cleared again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from seal_protocol import TOPIC_ROOT, MessageKind
from server.core.metrics import IngestMetrics
from server.core.mqtt import clear_retained

logger = logging.getLogger(__name__)

#: The kinds of a seal's messages that are never retained: a retained one is cleared.
CLEARED_KINDS = (MessageKind.EVENT, MessageKind.SNAPSHOT)
#: A broker that refuses the clears (an old ACL) is reported at most this often.
REFUSED_LOG_EVERY_S = 60.0
_ROOT = tuple(TOPIC_ROOT.split("/"))
#: The ingest's client the clears are sent through (None before it is made).
ClientOf = Callable[[], "mqtt.Client | None"]


def subscribe_options(kind: MessageKind) -> SubscribeOptions:
    """The ingest's subscription options for ``kind``: QoS 1; for the kinds never retained, Retain As Published and
    the retained messages at every subscription (to be cleared); for the status, the retained ones only for a new
    subscription (a seal's ``online``/``offline`` is the one thing a seal retains)."""
    if kind in CLEARED_KINDS:
        return SubscribeOptions(qos=1, retainAsPublished=True, retainHandling=SubscribeOptions.RETAIN_SEND_ON_SUBSCRIBE)
    return SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)


def never_retained(topic: str) -> bool:
    """``topic`` is a seal's ``event`` topic or a topic below its ``snapshot`` (what the ACL lets it write there)."""
    parts = topic.split("/")
    return len(parts) >= 4 and tuple(parts[:2]) == _ROOT and parts[3] in CLEARED_KINDS


class RetainedClearer:
    """Clears the retained messages the ingest receives on topics never retained, through the client ``client_of``
    gives (:func:`server.core.mqtt.clear_retained`, on paho's thread); :meth:`published` is paho's ``on_publish``."""

    def __init__(self, metrics: IngestMetrics, client_of: ClientOf) -> None:
        self._metrics = metrics
        self._client_of = client_of
        self._lock = threading.Lock()
        self._pending: dict[int, str] = {}  # packet id of a clear → its topic, until the broker answers
        self._refused_logged_at = -REFUSED_LOG_EVERY_S

    def received(self, topic: str, size: int) -> bool:
        """A message of ``size`` bytes came with the RETAIN flag on ``topic``. True: it is a deletion (empty, on a
        topic never retained: the broker's word that the retained message there was deleted, by the court's clear
        or by the seal), with nothing to store — logged and counted as ignored. Else the caller handles it as any
        message, and if ``topic`` is never retained its retained copy is cleared now."""
        if not never_retained(topic):
            return False
        if not size:
            logger.info("ignored a message on %r: the broker's word that its retained message was deleted", topic)
            self._metrics.count_ignored()
            return True
        logger.warning(
            "seal %s left a retained message on %r (%d bytes): clearing it (a seal may retain only its status; the "
            "message itself is handled as any other)",
            topic.split("/")[2],
            topic,
            size,
        )
        with self._lock:
            mid = clear_retained(self._client_of(), topic)
            if mid is not None:
                self._pending[mid] = topic
        if mid is None:
            self._metrics.count_retained_cleared("unsent")
            logger.error("could not send the clearing of %r (no connection): it is cleared after the next one", topic)
        return False

    def published(self, _client: object, _userdata: object, mid: int, reason_code: ReasonCode, _p: object) -> None:
        """paho's ``on_publish`` for every message the ingest's client publishes; those that are clears counted."""
        with self._lock:
            topic = self._pending.pop(mid, None)
        if topic is None:
            return
        if not reason_code.is_failure:
            self._metrics.count_retained_cleared("cleared")
            return
        self._metrics.count_retained_cleared("refused")
        now = time.monotonic()
        if now - self._refused_logged_at >= REFUSED_LOG_EVERY_S:
            self._refused_logged_at = now
            logger.error(
                "the broker refused to clear the retained message on %r (%s): the court's account may not write the "
                "seals' event and snapshot topics — an ACL from before this version; run seal-server broker "
                "write-files (once a minute at most)",
                topic,
                reason_code,
            )
