"""In-process counters of the ingest and the notifications, and their Prometheus text exposition.

Counters are incremented only after the transaction holding the message's row has committed, so a batch that is
retried message by message is never counted twice. The gauge of live alarms by kind is refreshed by the liveness
checker on each of its rounds.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal


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


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labelled(counts: Mapping[tuple[str, str], int], kind: str, name: str, label: str) -> list[str]:
    return [
        f'{name}{{{label}="{_escape_label(value)}"}} {count}'
        for (k, value), count in sorted(counts.items())
        if k == kind
    ]


def render_prometheus(
    metrics: MetricsSnapshot,
    *,
    seals_online: int,
    seals_total: int,
    broker_connected: bool,
    reasons: Iterable[str],
    progress: IngestProgress | None = None,
) -> str:
    """The Prometheus text format (version 0.0.4). Every known reason is listed, at 0 if never seen."""
    progress = progress or IngestProgress(0, 0.0, None)
    lines = [
        "# HELP seal_events_ingested_total Events verified and stored.",
        "# TYPE seal_events_ingested_total counter",
        f"seal_events_ingested_total {metrics.stored}",
        "# HELP seal_events_duplicate_total Redelivered events that were already stored (no-op).",
        "# TYPE seal_events_duplicate_total counter",
        f"seal_events_duplicate_total {metrics.duplicates}",
        "# HELP seal_status_updates_total Status messages applied to a seal.",
        "# TYPE seal_status_updates_total counter",
        f"seal_status_updates_total {metrics.status_updates}",
        "# HELP seal_snapshots_stored_total Snapshots stored.",
        "# TYPE seal_snapshots_stored_total counter",
        f"seal_snapshots_stored_total {metrics.snapshots}",
        "# HELP seal_messages_ignored_total Messages with nothing to store (an empty status: a retained one cleared).",
        "# TYPE seal_messages_ignored_total counter",
        f"seal_messages_ignored_total {metrics.ignored}",
        "# HELP seal_messages_rejected_total Messages quarantined, by reason.",
        "# TYPE seal_messages_rejected_total counter",
    ]
    counts = dict.fromkeys(reasons, 0) | metrics.rejected
    for reason in sorted(counts):
        lines.append(f'seal_messages_rejected_total{{reason="{_escape_label(reason)}"}} {counts[reason]}')
    lines += [
        "# HELP seal_seals_online Seals whose last status is online and that were heard from recently.",
        "# TYPE seal_seals_online gauge",
        f"seal_seals_online {seals_online}",
        "# HELP seal_seals_registered Seals registered.",
        "# TYPE seal_seals_registered gauge",
        f"seal_seals_registered {seals_total}",
        "# HELP seal_broker_connected 1 if the ingest holds an accepted MQTT connection.",
        "# TYPE seal_broker_connected gauge",
        f"seal_broker_connected {int(broker_connected)}",
        "# HELP seal_ingest_unstored_messages Messages received from the broker and not yet stored.",
        "# TYPE seal_ingest_unstored_messages gauge",
        f"seal_ingest_unstored_messages {progress.unstored}",
        "# HELP seal_ingest_oldest_unstored_seconds Age of the oldest message received and not yet stored (0: none).",
        "# TYPE seal_ingest_oldest_unstored_seconds gauge",
        f"seal_ingest_oldest_unstored_seconds {progress.oldest_unstored_s:.3f}",
        "# HELP seal_ingest_storage_failing 1 while storing fails because the database does not answer.",
        "# TYPE seal_ingest_storage_failing gauge",
        f"seal_ingest_storage_failing {int(progress.storage_failing_since is not None)}",
        "# HELP seal_ingest_storage_retries_total Batches retried because the database did not answer.",
        "# TYPE seal_ingest_storage_retries_total counter",
        f"seal_ingest_storage_retries_total {metrics.storage_retries}",
        "# HELP seal_alarms_live Open or acknowledged alarms, by kind (as of the last liveness check).",
        "# TYPE seal_alarms_live gauge",
    ]
    for kind in sorted(metrics.alarms_live):
        lines.append(f'seal_alarms_live{{kind="{_escape_label(kind)}"}} {metrics.alarms_live[kind]}')
    lines += [
        "# HELP seal_notifications_sent_total Alarm notifications delivered (webhook answered 2xx).",
        "# TYPE seal_notifications_sent_total counter",
        f"seal_notifications_sent_total {metrics.notifications_sent}",
        "# HELP seal_notification_attempts_failed_total Webhook attempts that failed (retried or given up).",
        "# TYPE seal_notification_attempts_failed_total counter",
        f"seal_notification_attempts_failed_total {metrics.notification_attempts_failed}",
        "# HELP seal_notifications_failed_total Alarm notifications given up after their last attempt.",
        "# TYPE seal_notifications_failed_total counter",
        f"seal_notifications_failed_total {metrics.notifications_failed}",
        "# HELP seal_commands_published_total Publish attempts of court commands, by result (accepted: the "
        "broker took it; not delivery).",
        "# TYPE seal_commands_published_total counter",
        *_labelled(metrics.commands, "published", "seal_commands_published_total", "result"),
        "# HELP seal_command_answers_total command_ack/command_rejected events stored, by what they did.",
        "# TYPE seal_command_answers_total counter",
        *_labelled(metrics.commands, "answer", "seal_command_answers_total", "outcome"),
        "# HELP seal_commands_expired_total Commands that expired without an answer.",
        "# TYPE seal_commands_expired_total counter",
        f"seal_commands_expired_total {metrics.commands.get(('expired', ''), 0)}",
    ]
    return "\n".join(lines) + "\n"
