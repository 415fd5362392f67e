"""What :meth:`server.core.metrics.IngestMetrics.snapshot` reads back from the registry (:func:`read_snapshot`):
the counts the health check and the tests wait on."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry


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
    #: RFC 3161 time stamps of checkpoints by result: "stamped", or why none was kept (unreachable, refused, ...).
    timestamps: dict[str, int] = field(default_factory=dict)
    #: Messages of the court's live feed by result (sent, unsent, received, duplicate, malformed).
    live_feed: dict[str, int] = field(default_factory=dict)
    #: The pages' streams told to reload because changes may have been missed, by reason.
    live_gaps: dict[str, int] = field(default_factory=dict)
    #: Messages at QoS 0 dropped unread: the ingest held more than its bound (server.ingest.backlog).
    dropped: int = 0
    #: Statuses stamped past the court's clock + skew, ordered as received instead (server.ingest.statuses).
    status_stamps_clamped: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def read_snapshot(registry: CollectorRegistry) -> MetricsSnapshot:
    """The counts of ``registry`` (an :class:`~server.core.metrics.IngestMetrics`'s) as a snapshot."""
    value = registry.get_sample_value
    return MetricsSnapshot(
        stored=int(value("seal_events_ingested_total") or 0),
        duplicates=int(value("seal_events_duplicate_total") or 0),
        status_updates=int(value("seal_status_updates_total") or 0),
        snapshots=int(value("seal_snapshots_stored_total") or 0),
        rejected={k: v for k, v in by_label(registry, "seal_messages_rejected", "reason").items() if v},
        notifications_sent=int(value("seal_notifications_sent_total") or 0),
        notification_attempts_failed=int(value("seal_notification_attempts_failed_total") or 0),
        notifications_failed=int(value("seal_notifications_failed_total") or 0),
        alarms_live=by_label(registry, "seal_alarms_live", "kind"),
        commands={
            **{("published", k): v for k, v in by_label(registry, "seal_commands_published", "result").items()},
            **{("answer", k): v for k, v in by_label(registry, "seal_command_answers", "outcome").items()},
            **({("expired", ""): n} if (n := int(value("seal_commands_expired_total") or 0)) else {}),
        },
        storage_retries=int(value("seal_ingest_storage_retries_total") or 0),
        ignored=int(value("seal_messages_ignored_total") or 0),
        timestamps=by_label(registry, "seal_log_timestamps", "result"),
        live_feed=by_label(registry, "seal_live_feed_messages", "result"),
        live_gaps=by_label(registry, "seal_live_gaps", "reason"),
        dropped=int(value("seal_messages_dropped_total") or 0),
        status_stamps_clamped=int(value("seal_status_stamps_clamped_total") or 0),
    )


def by_label(registry: CollectorRegistry, name: str, label: str) -> dict[str, int]:
    """The values of the metric ``name`` of ``registry`` by the value of its ``label``."""
    counts: dict[str, int] = {}
    for family in registry.collect():
        if family.name == name:
            for sample in family.samples:
                if sample.name in (name, f"{name}_total") and label in sample.labels:
                    counts[sample.labels[label]] = int(sample.value)
    return counts
