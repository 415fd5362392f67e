"""What :meth:`server.core.metrics.IngestMetrics.snapshot` reads back from the registry: the counts the health check
and the tests wait on."""

from __future__ import annotations

from dataclasses import dataclass, field


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
