"""The notification worker: sends due notifications, retries with back-off, records every outcome.

A claim leases due rows (``pending`` and ``next_attempt_at`` reached) in one transaction — counting the attempt and
pushing ``next_attempt_at`` out by a lease, so that a crash mid-send means a retry after the lease, not a lost
notification — then they are sent outside any transaction, and each outcome is recorded as it comes, in a short
transaction of its own: ``sent``; or another try after ``retry_base_s * 2**(attempts-1)`` (at most
``retry_max_s``); or ``failed`` after ``max_attempts``.

A target is a receiver's host and port (:func:`server.notify.health.target_key`): every URL behind one firewall or
relay fails alike. A persistent pool of :data:`SEND_THREADS` sender threads sends; each thread sends one target's
chain of at most :data:`PER_TARGET` rows, one after another, in the order they were written, and records each
outcome itself. The loop — every ``poll_interval_s``, and at once when a chain ends — claims only for targets with
no chain under way (the claim query itself leaves their rows out, so they cannot fill its limit), and only as many
targets as threads are free, so a claimed chain starts at once. Rows never tried are claimed before retries, so a
fresh alarm never waits behind failed ones.

A dead receiver costs a thread ``timeout_s`` per request, so its target gets a breaker (:mod:`server.notify.health`):
after a failed send it opens for the back-off of the target's consecutive failures, and the rest of its chain, and
each of its rows due meanwhile, is recorded at once as a failed attempt without a request ("not sent: … is
failing"), with its back-off, warning and metrics, so it is given up after ``max_attempts`` as if it had been sent.
Then the target's next chain is a trial; such suspect chains — and those of targets this worker does not know whose
rows failed before (another worker's, or before a restart) — run on at most :data:`SUSPECT_THREADS` threads in all,
and a delivered notification closes the breaker. So however many receivers are dead, ``SEND_THREADS -
SUSPECT_THREADS`` threads stay for the others: a slow receiver delays only its own notifications — save at first
contact: a receiver never heard from is sent to like a good one, so more than that many dead ones first due at the
same moment delay the others once, by one ``timeout_s`` per batch. The breakers are each worker's own memory.

Every send is cut off after ``timeout_s`` (:mod:`server.notify.http_post`), so the ``n``-th row of a chain is sent
by ``n * (timeout_s + SEND_SLACK_S)`` after its claim: its lease (:func:`send_lease`) lasts that and a margin; a row
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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, select
from sqlalchemy.orm import selectinload

from server.alarms.models import Alarm
from server.config import NotifySettings
from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.notify.addresses import AddressPolicy
from server.notify.health import Standing, TargetHealth, target_key
from server.notify.models import Notification
from server.notify.outbox import DeliveryState
from server.notify.webhook import Delivery, Notifier, Recipient, WebhookNotifier, read_secret

logger = logging.getLogger(__name__)

CLAIM_LIMIT = 50
#: Targets sent to at once, each by a sender thread of the worker's pool.
SEND_THREADS = 16
#: Of those, how many may send to suspect targets (failed, or failed before): the others stay for the rest.
SUSPECT_THREADS = 2
#: Notifications of one target claimed at once (sent one after another); the rest are claimed once these are done.
PER_TARGET = 5
#: How much longer than ``timeout_s`` one send may take (signing, the watchdog waking the read, the thread switch).
SEND_SLACK_S = 1.0
#: Added to a lease for the database work around the sends.
LEASE_MARGIN_S = 5.0

#: One target's claimed rows, in order: the alarm, where it goes, and the row's attempts counted by the claim.
Chain = list[tuple[Alarm, Recipient, int]]


@dataclass
class Claimed:
    """What one claim leased: chains to send (by target), and rows of targets whose breaker is open (not sent)."""

    chains: dict[str, Chain] = field(default_factory=dict)
    suspect: set[str] = field(default_factory=set)  # the targets of ``chains`` whose chain is a trial
    refused: list[tuple[str, Recipient]] = field(default_factory=list)
    claimed_at: float = 0.0  # time.monotonic() when the leases start
    more: bool = False  # the claim read CLAIM_LIMIT rows: other targets' may lie beyond


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
        # guarded by _lock: the targets whose chain is under way (sent or recorded), with its URLs and whether it
        # is a suspect's; each target's breaker; the pool
        self._busy: dict[str, tuple[set[str], bool]] = {}
        self._health = TargetHealth()
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()

    def run_once(self, wait_s: float = 120.0) -> int:
        """Claim what is due for the targets without a send under way and start sending it; then wait, at most
        ``wait_s`` (0: not at all), until no send is under way and every outcome is recorded. Return the number of
        attempts started (those recorded failed at once, their target's breaker open, included). For tests and
        tools: the worker's own loop never waits for sends."""
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
        start its chain; record the due rows of targets whose breaker is open as failed attempts. Return the number
        of attempts started."""
        started = 0
        while not self._stopping.is_set():
            with self._lock:
                free = SEND_THREADS - len(self._busy)
                suspects = SUSPECT_THREADS - sum(suspect for _, suspect in self._busy.values())
                busy = set(self._busy)
                leave_out = {url for urls, _ in self._busy.values() for url in urls}
                if suspects <= 0:  # no thread for a trial: the failing targets' rows must not fill the claim
                    leave_out |= self._health.failing_urls()
            if free <= 0:
                break
            claimed = self._claim(self._clock(), busy=busy, leave_out=leave_out, targets=free, suspects=suspects)
            if not claimed.chains and not claimed.refused:
                break
            with self._lock:
                stopping = self._stopping.is_set()  # stop() sets it before it lets the pool go
                if not stopping:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="notification-send")
                    for key, chain in claimed.chains.items():
                        self._busy[key] = ({recipient.url for _, recipient, _ in chain}, key in claimed.suspect)
                        self._pool.submit(self._send_chain, key, chain, claimed.claimed_at)
            if stopping:
                for chain in claimed.chains.values():
                    self._give_back(chain, "the worker stops")
            for key, recipient in claimed.refused:
                self._record_safely(Delivery(recipient, False, self._not_sent(key)))
            if stopping:
                break
            started += sum(len(chain) for chain in claimed.chains.values()) + len(claimed.refused)
            if not claimed.more:
                break
        return started

    def _send_chain(self, key: str, chain: Chain, claimed_at: float) -> None:
        """Send one target's rows in order and record each outcome (on a sender thread); once a send fails, open
        the target's breaker and record the rest failed without sending them; give back the rows not sent because
        the worker stops or their lease would not last; then free the target and wake the loop."""
        tripped = False
        try:
            for position, (alarm, recipient, _) in enumerate(chain):
                late = time.monotonic() - claimed_at > latest_start_s(position, self.settings.timeout_s)
                if self._stopping.is_set() or late:
                    self._give_back(chain[position:], "too late for its lease" if late else "the worker stops")
                    break
                if tripped:
                    self._record_safely(Delivery(recipient, False, self._not_sent(key)))
                    continue
                try:
                    [delivery] = self._notifier.notify(alarm, [recipient])
                except Exception as exc:  # a Notifier must not raise; if one does, the row is retried, not lost
                    logger.exception("the notifier failed on notification %d", recipient.notification_id)
                    delivery = Delivery(recipient, False, f"notifier error: {exc!r}")
                if delivery.delivered:
                    with self._lock:
                        self._health.delivered(key)
                elif delivery.retry:  # not the receiver's fault otherwise (no signing key): no breaker
                    tripped = True
                    self._trip(key, recipient.url, delivery.error or "failed")
                self._record_safely(delivery)
        finally:
            with self._lock:
                self._busy.pop(key, None)
                self._lock.notify_all()
            self._loop.wake()

    def _trip(self, key: str, url: str, error: str) -> None:
        """Open the breaker of ``key`` for the back-off of its consecutive failures."""
        with self._lock:
            wait = self.backoff(self._health.failures(key) + 1)
            failures = self._health.failed(key, url, error, self._clock().timestamp(), wait.total_seconds())
        logger.warning(
            "webhook target %s failed (%d in a row): its notifications are not sent for %.0f s",
            key,
            failures,
            wait.total_seconds(),
        )

    def _not_sent(self, key: str) -> str:
        with self._lock:
            why = self._health.why(key)
        return f"not sent: {key} is failing ({why})"

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt."""
        base = self.settings.retry_base_s * 2 ** min(attempts - 1, 30)
        return timedelta(seconds=min(base, self.settings.retry_max_s))

    def _standing(self, key: str, now: float) -> Standing:
        with self._lock:
            return self._health.standing(key, now)

    def _claim(self, now: datetime, *, busy: set[str], leave_out: set[str], targets: int, suspects: int) -> Claimed:
        """Lease the rows due at ``now`` — never tried first, then by due time — of targets not in ``busy`` (and
        of URLs not in ``leave_out``): at most ``targets`` chains (at most ``suspects`` of them trials of suspect
        targets) of at most :data:`PER_TARGET` rows each, in the order they were written; and every row read of a
        target whose breaker is open (recorded failed by the caller). The others stay due for the next claim."""
        claimed = Claimed()
        picked: dict[str, list[Notification]] = {}
        refused: list[tuple[str, Notification]] = []
        due = select(Notification).where(
            Notification.state == DeliveryState.PENDING.value, Notification.next_attempt_at <= now
        )
        if leave_out:
            due = due.where(Notification.url.not_in(sorted(leave_out)))
        retried = case((Notification.attempts > 0, 1), else_=0)
        with self._session_factory() as session:
            rows = session.scalars(
                due.order_by(retried, Notification.next_attempt_at, Notification.id)
                .limit(CLAIM_LIMIT)
                .with_for_update(skip_locked=True)
                .options(selectinload(Notification.alarm), selectinload(Notification.target))
            ).all()
            leased_at, claimed.claimed_at = self._clock(), time.monotonic()
            for row in rows:
                key = target_key(row.url)
                if key in busy:
                    continue
                standing = self._standing(key, leased_at.timestamp())
                if standing in (Standing.OPEN, Standing.HALF_OPEN):
                    with self._lock:
                        self._health.learn_url(key, row.url)
                if standing is Standing.OPEN:
                    refused.append((key, row))
                    continue
                chain = picked.get(key)
                if chain is None:
                    suspect = standing is Standing.HALF_OPEN or (standing is Standing.UNKNOWN and row.attempts > 0)
                    if len(picked) >= targets or (suspect and len(claimed.suspect) >= suspects):
                        continue
                    chain = picked[key] = []
                    if suspect:
                        claimed.suspect.add(key)
                if len(chain) < PER_TARGET:
                    chain.append(row)
            for key, chain in picked.items():
                claimed.chains[key] = [
                    self._lease(row, leased_at, position)
                    for position, row in enumerate(sorted(chain, key=lambda row: row.id))
                ]
            for key, row in refused:
                claimed.refused.append((key, self._lease(row, leased_at, 0)[1]))
            session.commit()
        claimed.more = len(rows) >= CLAIM_LIMIT
        return claimed

    def _lease(self, row: Notification, leased_at: datetime, position: int) -> tuple[Alarm, Recipient, int]:
        """Count an attempt of ``row`` and lease it as the ``position``-th of its chain."""
        row.attempts += 1
        row.next_attempt_at = leased_at + send_lease(position, self.settings.timeout_s)
        recipient = Recipient(row.id, row.role, row.url, row.target.secret if row.target else None)
        return row.alarm, recipient, row.attempts

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

    def _record_safely(self, delivery: Delivery) -> None:
        try:
            self._record(delivery)
        except Exception:  # not recorded: the row stays leased and is sent again after its lease
            logger.exception("could not record notification %d", delivery.recipient.notification_id)

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
