"""The notification worker: sends due notifications, retries with back-off, records every outcome.

Each round claims the due rows (``pending`` and ``next_attempt_at`` reached) in one transaction — counting the
attempt and pushing ``next_attempt_at`` out by a lease, so that a crash mid-send means a retry after the lease, not
a lost notification — then sends them outside any transaction, and records each outcome as it comes: ``sent``; or
another try after ``retry_base_s * 2**(attempts-1)`` (at most ``retry_max_s``); or ``failed`` after ``max_attempts``.

The rows of one target (one URL) are sent one after another, in order, by one thread; up to :data:`SEND_THREADS`
targets are sent to at once, so a slow receiver delays only its own notifications. Every send is cut off after
``timeout_s`` (:mod:`server.notify.http_post`), so the ``n``-th row of its target's chain is sent by
``n * (timeout_s + SEND_SLACK_S)`` after the claim: its lease (:func:`send_lease`) lasts that and a margin.
On PostgreSQL, several servers may run workers: rows are claimed with ``SKIP LOCKED``, and no other worker claims a
row again while its send is still under way (that would be a duplicate webhook).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server.alarms.models import Alarm
from server.config import NotifySettings
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.notify.addresses import AddressPolicy
from server.notify.models import Notification
from server.notify.outbox import DeliveryState
from server.notify.webhook import Delivery, Notifier, Recipient, WebhookNotifier, read_secret

logger = logging.getLogger(__name__)

CLAIM_LIMIT = 50
#: Targets sent to at once, each by a thread of its own.
SEND_THREADS = 8
#: Notifications of one target sent in one round (one after another); the rest wait for the next round.
PER_TARGET = 5
#: How much longer than ``timeout_s`` one send may take (signing, the watchdog waking the read, the thread switch).
SEND_SLACK_S = 1.0
#: Added to a lease for the database work around the sends.
LEASE_MARGIN_S = 5.0

Chain = list[tuple[Alarm, Recipient]]


def send_lease(position: int, timeout_s: float) -> timedelta:
    """How long a row stays leased when it is the ``position``-th (from 0) of its target's chain in a round: the
    sends before it and its own, each cut off after ``timeout_s``, then the margin to record it."""
    return timedelta(seconds=(position + 1) * (timeout_s + SEND_SLACK_S) + LEASE_MARGIN_S)


class NotificationWorker:
    """Delivers the notification outbox through a :class:`Notifier`: :meth:`run_once`, or :meth:`start` a thread."""

    def __init__(
        self,
        session_factory: SessionFactory,
        notifier: Notifier,
        *,
        settings: NotifySettings,
        metrics: IngestMetrics,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._session_factory = session_factory
        self._notifier = notifier
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        self._loop = RoundLoop("notification-worker", self.run_once, settings.poll_interval_s)

    def run_once(self) -> int:
        """Send what is due now; return the number of attempts made."""
        chains = self._claim(self._clock())
        if not chains:
            return 0
        outcomes: queue.Queue[Delivery] = queue.Queue()
        with ThreadPoolExecutor(len(chains), thread_name_prefix="notification-send") as pool:
            for chain in chains:
                pool.submit(self._send_chain, chain, outcomes.put)
            attempts = sum(len(chain) for chain in chains)
            for _ in range(attempts):
                self._record(outcomes.get())
        return attempts

    def _send_chain(self, chain: Chain, report: Callable[[Delivery], None]) -> None:
        """Send one target's rows in order (on a thread of the round's pool); ``report`` every outcome."""
        for alarm, recipient in chain:
            try:
                [delivery] = self._notifier.notify(alarm, [recipient])
            except Exception as exc:  # a Notifier must not raise; if one does, the row is retried, not lost
                logger.exception("the notifier failed on notification %d", recipient.notification_id)
                delivery = Delivery(recipient, False, f"notifier error: {exc!r}")
            report(delivery)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        base = self.settings.retry_base_s * 2 ** min(attempts - 1, 30)
        return timedelta(seconds=min(base, self.settings.retry_max_s))

    def _claim(self, now: datetime) -> list[Chain]:
        """Lease the due rows, as one chain per target (URL): at most :data:`SEND_THREADS` chains of at most
        :data:`PER_TARGET` rows; the others stay due for the next round."""
        chains: dict[str, Chain] = {}
        with self._session_factory() as session:
            rows = session.scalars(
                select(Notification)
                .where(Notification.state == DeliveryState.PENDING.value, Notification.next_attempt_at <= now)
                .order_by(Notification.id)
                .limit(CLAIM_LIMIT)
                .with_for_update(skip_locked=True)
                .options(selectinload(Notification.alarm), selectinload(Notification.target))
            ).all()
            for row in rows:
                chain = chains.get(row.url)
                if chain is None and len(chains) < SEND_THREADS:
                    chain = chains[row.url] = []
                if chain is None or len(chain) >= PER_TARGET:
                    continue
                row.attempts += 1
                row.next_attempt_at = now + send_lease(len(chain), self.settings.timeout_s)
                recipient = Recipient(row.id, row.role, row.url, row.target.secret if row.target else None)
                chain.append((row.alarm, recipient))
            session.commit()
        return list(chains.values())

    def _record(self, delivery: Delivery) -> None:
        now = self._clock()
        recipient = delivery.recipient
        with self._session_factory() as session:
            row = session.get(Notification, recipient.notification_id, with_for_update=True)
            if row is None:  # deleted meanwhile: nothing to record
                return
            final = False
            if delivery.delivered:
                row.state = DeliveryState.SENT.value
                row.sent_at = now
                row.last_error = None
            else:
                row.last_error = delivery.error
                final = not delivery.retry or row.attempts >= self.settings.max_attempts
                if final:
                    row.state = DeliveryState.FAILED.value
                else:
                    row.next_attempt_at = now + self.backoff(row.attempts)
            attempts, alarm_id = row.attempts, row.alarm_id
            session.commit()
        self._metrics.count_notification(delivered=delivery.delivered, final=final)
        if delivery.delivered:
            logger.info("alarm %d notified to the %s at %s", alarm_id, recipient.role, recipient.url)
        elif final:
            logger.error(
                "giving up notifying alarm %d to the %s at %s after %d attempts: %s",
                alarm_id,
                recipient.role,
                recipient.url,
                attempts,
                delivery.error,
            )
        else:
            logger.warning(
                "notifying alarm %d to %s failed (attempt %d): %s", alarm_id, recipient.url, attempts, delivery.error
            )

    def wake(self) -> None:
        """Look for due notifications now instead of at the next poll."""
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)


def webhook_worker(
    session_factory: SessionFactory, *, settings: NotifySettings, metrics: IngestMetrics
) -> NotificationWorker:
    """The worker of :func:`server.app.create_app`: webhooks signed with the configured secret (if any)."""
    secret = read_secret(settings.webhook_secret_file) if settings.webhook_secret_file is not None else None
    notifier = WebhookNotifier(
        secret=secret, timeout_s=settings.timeout_s, policy=AddressPolicy.from_settings(settings)
    )
    return NotificationWorker(session_factory, notifier, settings=settings, metrics=metrics)
