"""In-process counters of the ingest and the notifications, and their Prometheus exposition (prometheus_client).

Counters are incremented only after the transaction holding the message's row has committed, so a batch that is
retried message by message is never counted twice. The gauge of live alarms by kind is refreshed by the liveness
checker on each of its rounds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass(frozen=True)
class MetricsSnapshot:
    stored: int
    duplicates: int
    status_updates: int
    snapshots: int
    rejected: dict[str, int]
    notifications_sent: int = 0
    notification_attempts_failed: int = 0
    notifications_failed: int = 0
    alarms_live: dict[str, int] = field(default_factory=dict)
    #: Court commands: ("published", result), ("answer", outcome), ("expired", "") -> count.
    commands: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Batches whose storing failed because the database did not answer (each retry counts).
    storage_retries: int = 0
    #: Messages acknowledged with nothing to store (an empty status: a retained status being cleared).
    ignored: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


#: A message received this long ago and still not stored means the ingest is not making progress. A batch normally
#: commits within milliseconds; seconds already mean trouble.
STALLED_AFTER_S = 30.0


@dataclass(frozen=True, slots=True)
class IngestProgress:
    """Is the ingest keeping up? Read by the health check and the metrics."""

    #: Messages received from the broker and not yet stored (queued, or in the batch being stored).
    unstored: int
    #: Age in seconds of the oldest of them (0 when there is none).
    oldest_unstored_s: float
    #: Since when (``time.monotonic()``) storing fails and is being retried, or ``None``.
    storage_failing_since: float | None

    @property
    def state(self) -> Literal["ok", "retrying", "stalled"]:
        """``ok``; ``retrying`` (the database does not answer); ``stalled`` (a message has waited too long)."""
        if self.storage_failing_since is not None:
            return "retrying"
        return "stalled" if self.oldest_unstored_s > STALLED_AFTER_S else "ok"


class IngestMetrics:
    """Thread-safe counters; :meth:`wait_until` lets a caller (a test, a health probe) wait for progress."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stored = 0
        self._duplicates = 0
        self._status_updates = 0
        self._snapshots = 0
        self._rejected: Counter[str] = Counter()
        self._notifications_sent = 0
        self._notification_attempts_failed = 0
        self._notifications_failed = 0
        self._alarms_live: dict[str, int] = {}
        self._commands: Counter[tuple[str, str]] = Counter()
        self._storage_retries = 0
        self._ignored = 0
        #: Receive → commit seconds of every message the ingest stored (exposed with the counters).
        self.commit_latency = commit_latency_histogram()

    def count_stored(self) -> None:
        with self._cond:
            self._stored += 1
            self._cond.notify_all()

    def count_duplicate(self) -> None:
        with self._cond:
            self._duplicates += 1
            self._cond.notify_all()

    def count_status(self) -> None:
        with self._cond:
            self._status_updates += 1
            self._cond.notify_all()

    def count_snapshot(self) -> None:
        with self._cond:
            self._snapshots += 1
            self._cond.notify_all()

    def count_rejected(self, reason: str) -> None:
        with self._cond:
            self._rejected[reason] += 1
            self._cond.notify_all()

    def count_ignored(self) -> None:
        with self._cond:
            self._ignored += 1
            self._cond.notify_all()

    def count_storage_retry(self) -> None:
        with self._cond:
            self._storage_retries += 1
            self._cond.notify_all()

    def count_notification(self, *, delivered: bool, final: bool) -> None:
        """One webhook attempt: delivered, or failed (``final``: no attempt is left, the notification failed)."""
        with self._cond:
            if delivered:
                self._notifications_sent += 1
            else:
                self._notification_attempts_failed += 1
                self._notifications_failed += int(final)
            self._cond.notify_all()

    def count_command(self, kind: str, label: str = "", n: int = 1) -> None:
        """A court command was published (``label``: the result), answered (the outcome) or expired."""
        with self._cond:
            self._commands[(kind, label)] += n
            self._cond.notify_all()

    def set_alarms_live(self, counts: Mapping[str, int]) -> None:
        with self._cond:
            self._alarms_live = dict(counts)
            self._cond.notify_all()

    def snapshot(self) -> MetricsSnapshot:
        with self._cond:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> MetricsSnapshot:
        return MetricsSnapshot(
            stored=self._stored,
            duplicates=self._duplicates,
            status_updates=self._status_updates,
            snapshots=self._snapshots,
            rejected=dict(self._rejected),
            notifications_sent=self._notifications_sent,
            notification_attempts_failed=self._notification_attempts_failed,
            notifications_failed=self._notifications_failed,
            alarms_live=dict(self._alarms_live),
            commands=dict(self._commands),
            storage_retries=self._storage_retries,
            ignored=self._ignored,
        )

    def wait_until(self, predicate: Callable[[MetricsSnapshot], bool], timeout: float) -> bool:
        """Block until ``predicate(snapshot)`` holds or ``timeout`` seconds pass; return whether it holds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._snapshot_locked()), timeout)


class _Families:
    """A prometheus_client collector of one scrape's values (the counters above and the gauges read for it)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _by_label(
    family: CounterMetricFamily | GaugeMetricFamily, counts: Mapping[str, int]
) -> CounterMetricFamily | GaugeMetricFamily:
    for value in sorted(counts):
        family.add_metric([value], counts[value])
    return family


def render_prometheus(
    metrics: MetricsSnapshot,
    *,
    seals_online: int,
    seals_total: int,
    broker_connected: bool,
    reasons: Iterable[str],
    progress: IngestProgress | None = None,
    latency: Histogram | None = None,
) -> str:
    """The Prometheus text format (version 0.0.4), written by prometheus_client. Every known reason is listed, at 0
    if never seen; ``latency`` adds the histogram of receive → commit times."""
    progress = progress or IngestProgress(0, 0.0, None)
    rejected = dict.fromkeys(reasons, 0) | metrics.rejected
    commands = metrics.commands
    families: list[Metric] = [
        _counter("seal_events_ingested", "Events verified and stored.", metrics.stored),
        _counter("seal_events_duplicate", "Redelivered events that were already stored (no-op).", metrics.duplicates),
        _counter("seal_status_updates", "Status messages applied to a seal.", metrics.status_updates),
        _counter("seal_snapshots_stored", "Snapshots stored.", metrics.snapshots),
        _counter(
            "seal_messages_ignored",
            "Messages with nothing to store (an empty status: a retained one cleared).",
            metrics.ignored,
        ),
        _by_label(
            CounterMetricFamily("seal_messages_rejected", "Messages quarantined, by reason.", labels=["reason"]),
            rejected,
        ),
        _gauge(
            "seal_seals_online", "Seals whose last status is online and that were heard from recently.", seals_online
        ),
        _gauge("seal_seals_registered", "Seals registered.", seals_total),
        _gauge("seal_broker_connected", "1 if the ingest holds an accepted MQTT connection.", int(broker_connected)),
        _gauge(
            "seal_ingest_unstored_messages", "Messages received from the broker and not yet stored.", progress.unstored
        ),
        _gauge(
            "seal_ingest_oldest_unstored_seconds",
            "Age of the oldest message received and not yet stored (0: none).",
            round(progress.oldest_unstored_s, 3),
        ),
        _gauge(
            "seal_ingest_storage_failing",
            "1 while storing fails because the database does not answer.",
            int(progress.storage_failing_since is not None),
        ),
        _counter(
            "seal_ingest_storage_retries",
            "Batches retried because the database did not answer.",
            metrics.storage_retries,
        ),
        _by_label(
            GaugeMetricFamily(
                "seal_alarms_live",
                "Open or acknowledged alarms, by kind (as of the last liveness check).",
                labels=["kind"],
            ),
            metrics.alarms_live,
        ),
        _counter(
            "seal_notifications_sent",
            "Alarm notifications delivered (webhook answered 2xx).",
            metrics.notifications_sent,
        ),
        _counter(
            "seal_notification_attempts_failed",
            "Webhook attempts that failed (retried or given up).",
            metrics.notification_attempts_failed,
        ),
        _counter(
            "seal_notifications_failed",
            "Alarm notifications given up after their last attempt.",
            metrics.notifications_failed,
        ),
        _by_label(
            CounterMetricFamily(
                "seal_commands_published",
                "Publish attempts of court commands, by result (accepted: the broker took it; not delivery).",
                labels=["result"],
            ),
            {label: n for (kind, label), n in commands.items() if kind == "published"},
        ),
        _by_label(
            CounterMetricFamily(
                "seal_command_answers",
                "command_ack/command_rejected events stored, by what they did.",
                labels=["outcome"],
            ),
            {label: n for (kind, label), n in commands.items() if kind == "answer"},
        ),
        _counter(
            "seal_commands_expired",
            "Commands that expired without an answer.",
            commands.get(("expired", ""), 0),
        ),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    if latency is not None:
        registry.register(latency)
    return generate_latest(registry).decode("utf-8")


def commit_latency_histogram() -> Histogram:
    """Seconds from a message's arrival at the ingest to the commit of its row (its acknowledgement follows)."""
    return Histogram(
        "seal_ingest_commit_seconds",
        "Seconds from receiving a message from the broker to committing what it became.",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
        registry=None,
    )
