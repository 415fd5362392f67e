"""The notification worker: sends due notifications, retries with back-off, records every outcome.

A claim leases due rows (``pending`` and ``next_attempt_at`` reached) in one transaction — counting the attempt and
pushing ``next_attempt_at`` out by a lease, so that a crash mid-send means a retry after the lease, not a lost
notification — then they are sent outside any transaction, and each outcome is recorded as it comes, in a short
transaction of its own: ``sent``; or another try after ``retry_base_s * 2**(attempts-1)`` (at most
``retry_max_s``); or ``failed`` after ``max_attempts``.

A persistent pool of :data:`SEND_THREADS` sender threads sends; each thread sends one target's (one URL's) chain of
at most :data:`PER_TARGET` rows, one after another, in order, and records each outcome itself. The loop — every
``poll_interval_s``, and at once when a chain ends — claims only for targets with no chain under way (the claim
query itself leaves their rows out, so they cannot fill its limit), and only as many targets as threads are free,
so a claimed chain starts at once. So no notification ever waits for another target's sends — not even one that
becomes due while a slow receiver's chain is under way: a slow receiver delays only its own notifications. Every
send is cut off after ``timeout_s`` (:mod:`server.notify.http_post`), so the ``n``-th row of a chain is sent by
``n * (timeout_s + SEND_SLACK_S)`` after its claim: its lease (:func:`send_lease`) lasts that and a margin; a row
whose turn comes too late for its lease (the records before it were slow) is not sent but given back. On
PostgreSQL, several servers may run workers: rows are claimed with ``SKIP LOCKED``, and no other worker claims a
row again while its send is still under way (that would be a duplicate webhook).

:meth:`NotificationWorker.stop` lets the sends under way end (a bounded wait) and their outcomes be recorded; the
rows of a chain not yet sent are given back (their attempt not counted, due at once). A send still under way when
the wait ends is recorded by its thread when it ends; if the process ends first, the row stays leased and is sent
again after its lease — never lost.
"""

from __future__ import annotations

import logging
import threading
import time
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
#: Targets sent to at once, each by a sender thread of the worker's pool.
SEND_THREADS = 8
#: Notifications of one target claimed at once (sent one after another); the rest are claimed once these are done.
PER_TARGET = 5
#: How much longer than ``timeout_s`` one send may take (signing, the watchdog waking the read, the thread switch).
SEND_SLACK_S = 1.0
#: Added to a lease for the database work around the sends.
LEASE_MARGIN_S = 5.0

#: One target's claimed rows, in order: the alarm, where it goes, and the row's attempts counted by the claim.
Chain = list[tuple[Alarm, Recipient, int]]


def send_lease(position: int, timeout_s: float) -> timedelta:
    """How long a row stays leased when it is the ``position``-th (from 0) of its target's chain: the sends before
    it and its own, each cut off after ``timeout_s``, then the margin to record it."""
    return timedelta(seconds=(position + 1) * (timeout_s + SEND_SLACK_S) + LEASE_MARGIN_S)


def latest_start_s(position: int, timeout_s: float) -> float:
    """Seconds after the claim by which the ``position``-th send of a chain must start for its outcome to be
    recorded within its lease (half the margin kept for the record)."""
    return position * (timeout_s + SEND_SLACK_S) + LEASE_MARGIN_S / 2


class NotificationWorker:
    """Delivers the notification outbox through a :class:`Notifier`: :meth:`start` its loop (and :meth:`stop` it),
    or, in tests, :meth:`run_once`."""

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
        self._loop = RoundLoop("notification-worker", self._claim_and_send, settings.poll_interval_s)
        self._lock = threading.Condition()
        self._busy: set[str] = set()  # the URLs whose chain is under way (sent or recorded), guarded by _lock
        self._pool: ThreadPoolExecutor | None = None  # guarded by _lock
        self._stopping = threading.Event()

    def run_once(self, wait_s: float = 120.0) -> int:
        """Claim what is due for the targets without a send under way and start sending it; then wait, at most
        ``wait_s`` (0: not at all), until no send is under way and every outcome is recorded. Return the number of
        attempts started. For tests and tools: the worker's own loop never waits for sends."""
        attempts = self._claim_and_send()
        if wait_s > 0 and not self.wait_idle(wait_s):
            logger.warning("notification sends still under way after %.1f s", wait_s)
        return attempts

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no send is under way and every outcome is recorded; False if ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._busy, timeout)

    def _claim_and_send(self) -> int:
        """One turn of the loop: claim for every free thread a target with due rows and no send under way, and
        start its chain. Return the number of attempts started."""
        started = 0
        while not self._stopping.is_set():
            with self._lock:
                busy, free = set(self._busy), SEND_THREADS - len(self._busy)
            if free <= 0:
                break
            chains, claimed_at, more = self._claim(self._clock(), busy=busy, targets=free)
            if not chains:
                break
            with self._lock:
                stopping = self._stopping.is_set()  # stop() sets it before it lets the pool go
                if not stopping:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="notification-send")
                    for chain in chains:
                        self._busy.add(chain[0][1].url)
                        self._pool.submit(self._send_chain, chain, claimed_at)
            if stopping:
                for chain in chains:
                    self._give_back(chain, "the worker stops")
                break
            started += sum(len(chain) for chain in chains)
            if not more:
                break
        return started

    def _send_chain(self, chain: Chain, claimed_at: float) -> None:
        """Send one target's rows in order and record each outcome (on a sender thread); give back the rows not
        sent because the worker stops or their lease would not last; then free the target and wake the loop."""
        url = chain[0][1].url
        try:
            for position, (alarm, recipient, _) in enumerate(chain):
                late = time.monotonic() - claimed_at > latest_start_s(position, self.settings.timeout_s)
                if self._stopping.is_set() or late:
                    self._give_back(chain[position:], "too late for its lease" if late else "the worker stops")
                    break
                try:
                    [delivery] = self._notifier.notify(alarm, [recipient])
                except Exception as exc:  # a Notifier must not raise; if one does, the row is retried, not lost
                    logger.exception("the notifier failed on notification %d", recipient.notification_id)
                    delivery = Delivery(recipient, False, f"notifier error: {exc!r}")
                try:
                    self._record(delivery)
                except Exception:  # not recorded: the row stays leased and is sent again after its lease
                    logger.exception("could not record notification %d", recipient.notification_id)
        finally:
            with self._lock:
                self._busy.discard(url)
                self._lock.notify_all()
            self._loop.wake()

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        base = self.settings.retry_base_s * 2 ** min(attempts - 1, 30)
        return timedelta(seconds=min(base, self.settings.retry_max_s))

    def _claim(self, now: datetime, *, busy: set[str], targets: int) -> tuple[list[Chain], float, bool]:
        """Lease the rows due at ``now`` of targets (URLs) not in ``busy``, as one chain per target: at most
        ``targets`` chains of at most :data:`PER_TARGET` rows; the others stay due for the next claim. Also return
        when (``time.monotonic()``) the leases start — once the rows are locked (SQLite may have waited for its
        write lock) —, and whether the claim read :data:`CLAIM_LIMIT` rows (other targets' may lie beyond)."""
        chains: dict[str, Chain] = {}
        due = select(Notification).where(
            Notification.state == DeliveryState.PENDING.value, Notification.next_attempt_at <= now
        )
        if busy:
            due = due.where(Notification.url.not_in(sorted(busy)))
        with self._session_factory() as session:
            rows = session.scalars(
                due.order_by(Notification.id)
                .limit(CLAIM_LIMIT)
                .with_for_update(skip_locked=True)
                .options(selectinload(Notification.alarm), selectinload(Notification.target))
            ).all()
            leased_at, claimed_at = self._clock(), time.monotonic()
            for row in rows:
                chain = chains.get(row.url)
                if chain is None and len(chains) < targets:
                    chain = chains[row.url] = []
                if chain is None or len(chain) >= PER_TARGET:
                    continue
                row.attempts += 1
                row.next_attempt_at = leased_at + send_lease(len(chain), self.settings.timeout_s)
                recipient = Recipient(row.id, row.role, row.url, row.target.secret if row.target else None)
                chain.append((row.alarm, recipient, row.attempts))
            session.commit()
        return list(chains.values()), claimed_at, len(rows) >= CLAIM_LIMIT

    def _give_back(self, chain: Chain, why: str) -> None:
        """Give back the lease of claimed rows that were not sent: due at once, their attempt not counted — unless
        another worker claimed a row since (its lease had passed). If this fails, they are sent after their lease."""
        now = self._clock()
        ids = [recipient.notification_id for _, recipient, _ in chain]
        try:
            with self._session_factory() as session:
                for _, recipient, attempts in chain:
                    row = session.get(Notification, recipient.notification_id, with_for_update=True)
                    if row is not None and row.state == DeliveryState.PENDING.value and row.attempts == attempts:
                        row.attempts -= 1
                        row.next_attempt_at = now
                session.commit()
        except Exception:
            logger.exception("could not give back notifications %s: they are sent after their lease", ids)
            return
        logger.info("notifications %s not sent (%s): due again", ids, why)

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
        self._stopping.clear()
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and let the sends under way end, waiting at most ``timeout`` in all for their outcomes to
        be recorded (a send still under way then is recorded by its thread when it ends); the rows of a chain not
        yet sent are given back."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._loop.stop(timeout)
        if not self.wait_idle(max(deadline - time.monotonic(), 0.0)):
            with self._lock:
                busy = sorted(self._busy)
            logger.warning("notification-worker stopped with sends to %s under way: recorded when they end", busy)
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)  # its threads end with their chains


def webhook_worker(
    session_factory: SessionFactory, *, settings: NotifySettings, metrics: IngestMetrics
) -> NotificationWorker:
    """The worker of :func:`server.app.create_app`: webhooks signed with the configured secret (if any)."""
    secret = read_secret(settings.webhook_secret_file) if settings.webhook_secret_file is not None else None
    notifier = WebhookNotifier(
        secret=secret, timeout_s=settings.timeout_s, policy=AddressPolicy.from_settings(settings)
    )
    return NotificationWorker(session_factory, notifier, settings=settings, metrics=metrics)
