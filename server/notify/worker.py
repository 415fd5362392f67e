"""The notification worker: sends due notifications, retries with back-off, records every outcome.

Each round claims the due rows (``pending`` and ``next_attempt_at`` reached) in one transaction — counting the
attempt and pushing ``next_attempt_at`` out by a lease, so that a crash mid-send means a retry after the lease, not
a lost notification — then sends them one after another outside any transaction, then records each outcome:
``sent``; or another try after ``retry_base_s * 2**(attempts-1)`` (at most ``retry_max_s``); or ``failed`` after
``max_attempts``.
On PostgreSQL, several servers may run workers: rows are claimed with ``SKIP LOCKED``, and the lease
(:func:`round_lease`) lasts as long as the whole round can take, so that no other worker claims a row again while it
is still waiting its turn to be sent (that would be a duplicate webhook).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from server.alarms.models import Alarm
from server.config import NotifySettings
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.notify.models import Notification
from server.notify.outbox import DeliveryState
from server.notify.webhook import Delivery, Notifier, Recipient, WebhookNotifier, read_secret

logger = logging.getLogger(__name__)

CLAIM_LIMIT = 50
#: Added to a lease for the database work around the sends.
LEASE_MARGIN_S = 5.0


def round_lease(claimed: int, timeout_s: float) -> timedelta:
    """How long ``claimed`` rows stay leased: they are sent one after another, and one send may take up to twice
    ``timeout_s`` (connecting, then reading the answer)."""
    return timedelta(seconds=claimed * 2 * timeout_s + LEASE_MARGIN_S)


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
        claimed = self._claim(self._clock())
        deliveries = [d for alarm, recipients in claimed for d in self._notifier.notify(alarm, recipients)]
        for delivery in deliveries:
            self._record(delivery)
        return len(deliveries)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        base = self.settings.retry_base_s * 2 ** min(attempts - 1, 30)
        return timedelta(seconds=min(base, self.settings.retry_max_s))

    def _claim(self, now: datetime) -> list[tuple[Alarm, list[Recipient]]]:
        by_alarm: dict[int, tuple[Alarm, list[Recipient]]] = {}
        with self._session_factory() as session:
            rows = session.scalars(
                select(Notification)
                .where(Notification.state == DeliveryState.PENDING.value, Notification.next_attempt_at <= now)
                .order_by(Notification.id)
                .limit(CLAIM_LIMIT)
                .with_for_update(skip_locked=True)
                .options(selectinload(Notification.alarm), selectinload(Notification.target))
            ).all()
            lease = round_lease(len(rows), self.settings.timeout_s)
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + lease
                recipient = Recipient(row.id, row.role, row.url, row.target.secret if row.target else None)
                by_alarm.setdefault(row.alarm_id, (row.alarm, []))[1].append(recipient)
            session.commit()
        return list(by_alarm.values())

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
    notifier = WebhookNotifier(secret=secret, timeout_s=settings.timeout_s)
    return NotificationWorker(session_factory, notifier, settings=settings, metrics=metrics)
