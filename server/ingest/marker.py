"""An ingest worker's markers, which tell how far it has caught up with the broker (:mod:`server.marks.marks`).

Every ``[mqtt] mark_interval_s`` the worker publishes, QoS 1, the moment it sends (ISO 8601, the court's clock) to
``court/v1/ingest-mark/<its client name>``, a topic only it subscribes to (plainly, never through the shared group;
the court's account may read and write ``court/v1/ingest-mark/#``: :func:`server.seals.broker_files.acl_text`).
Mosquitto delivers a client's queued messages in order, so when the worker takes the marker from its queue, every
message the broker held for it before the marker is in the batches taken before it, or in the marker's own batch.
Once those are committed, :meth:`Marker.passed` records the marker's send time as the worker's ``caught_up_at`` (an
event beyond a gap is stored like any other: nothing is held back past its batch, :mod:`server.ingest.gap_wait`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.rounds import RoundLoop
from server.marks.marks import mark_topic, record_mark

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: A worker none of whose markers came back for this long says so (and again as often).
SILENT_WARNING_S = 60.0


class Marker:
    """Publishes ``worker``'s markers (:meth:`start`: every ``interval_s`` while ``may_publish()``) through
    ``publish(topic, payload)``, and records those the worker has passed (:meth:`passed`)."""

    def __init__(
        self,
        worker: str,
        session_factory: SessionFactory,
        *,
        interval_s: float,
        publish: Callable[[str, bytes], object],
        may_publish: Callable[[], bool],
    ) -> None:
        self.worker = worker
        self.topic = mark_topic(worker)
        self._session_factory = session_factory
        self._publish = publish
        self._may_publish = may_publish
        self._loop = RoundLoop("ingest-marker", self.send, interval_s)
        self._waiting_since: float | None = None  # the first marker sent since the last one came back
        self._warned_at = -SILENT_WARNING_S

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def wake(self) -> None:
        """Send a marker now (the subscriptions were just granted)."""
        self._loop.wake()

    def send(self) -> None:
        if not self._may_publish():
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since >= SILENT_WARNING_S and now - self._warned_at >= SILENT_WARNING_S:
            self._warned_at = now
            logger.warning(
                "no marker of %s came back for %.0f s: the ingest is behind, or the broker refuses them (an ACL "
                "from before the markers: seal-server broker write-files)",
                self.worker,
                now - self._waiting_since,
            )
        self._publish(self.topic, utc_now().isoformat().encode())

    def split(self, items: list[T], topic: Callable[[T], str]) -> tuple[list[T], list[T]]:
        """(``items`` that are not this worker's markers, its markers), each in order."""
        marks = [item for item in items if topic(item) == self.topic]
        return ([item for item in items if topic(item) != self.topic], marks) if marks else (items, [])

    def passed(self, payloads: list[bytes]) -> None:
        """The worker has committed everything it received before these markers: record the newest send time."""
        sent = []
        for payload in payloads:
            try:
                at = datetime.fromisoformat(payload.decode())
            except (UnicodeDecodeError, ValueError):
                at = None
            if at is None or at.tzinfo is None:  # the others of the batch still count
                logger.warning("a marker on %s is not a timestamp with its zone: %r", self.topic, payload[:64])
                continue
            sent.append(at)
        if not sent:
            return
        self._waiting_since = None
        try:
            with self._session_factory() as session:
                record_mark(session, worker=self.worker, caught_up_at=max(sent))
                session.commit()
        except Exception:  # a mark not recorded only postpones judging until the next one; the batch is stored
            logger.exception("ingest mark of %s not recorded", self.worker)
