"""The court server's metrics: prometheus_client counters, gauges and a histogram in one registry per server.

Counters are incremented only after the transaction holding the message's row has committed, so a batch that is
retried message by message is never counted twice. The gauge of live alarms by kind is refreshed by the liveness
checker on each of its rounds; the gauges of seals and of the ingest's progress are set when ``/metrics`` is read.
:meth:`IngestMetrics.snapshot` reads the same registry back (for the health check and the tests).

Each process has its own registry and serves it itself: ``seal-server run`` on its ``/metrics``, each ``seal-server
ingest`` worker on a port of its own (:mod:`server.core.metrics_http`), each a Prometheus target. prometheus_client's
multiprocess mode was not chosen: it works on one machine only, needs a directory wiped at every start, and does not
support what this registry does (gauges cleared and set at scrape time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from server.core.metrics_snapshot import MetricsSnapshot, by_label, read_snapshot
from server.core.progress import IngestProgress

# The ``*_created`` series (when each counter was made) say nothing a scraper needs, and the exposition kept the
# names it had before prometheus_client without them.
disable_created_metrics()


class IngestMetrics:
    """The server's registry of metrics. Thread-safe; :meth:`wait_until` lets a caller (a test, a health probe) wait
    for progress."""

    def __init__(self, *, seal_gauges: bool = True) -> None:
        """``seal_gauges``: the gauges of seals online and registered, which ``seal-server run`` sets from the
        database at each scrape (an ingest worker has none: its /metrics would say 0)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # the gauges a scrape sets, and the reasons it lists
        r = self.registry
        self._stored = Counter("seal_events_ingested", "Events verified and stored.", registry=r)
        self._duplicates = Counter(
            "seal_events_duplicate", "Redelivered events that were already stored (no-op).", registry=r
        )
        self._status_updates = Counter("seal_status_updates", "Status messages applied to a seal.", registry=r)
        self._snapshots = Counter("seal_snapshots_stored", "Snapshots stored.", registry=r)
        clamped = "Statuses stamped past the court's clock + skew, ordered as received."
        self._stamps_clamped = Counter("seal_status_stamps_clamped", clamped, registry=r)
        self._ignored = Counter(
            "seal_messages_ignored",
            "Messages with nothing to store (empty and retained: the broker saying a retained one was cleared).",
            registry=r,
        )
        self._rejected = Counter("seal_messages_rejected", "Messages quarantined, by reason.", ["reason"], registry=r)
        self._quarantine_counted = Counter(
            "seal_quarantine_counted_only",
            "Refused messages counted without a quarantine row (their seal account's quarantine_seal_rows per window "
            "used: server.ingest.refusal_count), by reason.",
            ["reason"],
            registry=r,
        )
        self._quarantine_not_kept = Counter(
            "seal_quarantine_bytes_not_kept",
            "Quarantine rows written without the message's bytes because the quarantine's byte budget was used, by "
            "which: seal (the seal account's, [ingest] quarantine_seal_bytes) or total (quarantine_total_bytes).",
            ["scope"],
            registry=r,
        )
        self._dropped = Counter(
            "seal_messages_dropped",
            "Messages at QoS 0 dropped unread while the ingest held more than its bound of messages unstored (seals "
            "publish at QoS 1).",
            registry=r,
        )
        self._properties_dropped = Counter(
            "seal_mqtt_properties_dropped",
            "Messages delivered without the MQTT properties the MQTT library could not parse (the court reads none).",
            registry=r,
        )
        self._retained_cleared = Counter(
            "seal_retained_cleared",
            "Retained messages found on seals' event and snapshot topics, by what became of their clearing: cleared, "
            "refused (by the broker: an ACL from before the clearing), unsent (no connection).",
            ["result"],
            registry=r,
        )
        self._seals_online: Gauge | None = None
        self._seals_registered: Gauge | None = None
        if seal_gauges:
            self._seals_online = Gauge(
                "seal_seals_online", "Seals whose last status is online and that were heard from recently.", registry=r
            )
            self._seals_registered = Gauge("seal_seals_registered", "Seals registered.", registry=r)
        self._broker_connected = Gauge(
            "seal_broker_connected", "1 if the ingest holds an accepted MQTT connection.", registry=r
        )
        self._unstored = Gauge(
            "seal_ingest_unstored_messages", "Messages received from the broker and not yet stored.", registry=r
        )
        self._unstored_bytes = Gauge(
            "seal_ingest_unstored_bytes",
            "Bytes of the messages received from the broker and not yet stored (payload, topic, overhead).",
            registry=r,
        )
        self._oldest_unstored = Gauge(
            "seal_ingest_oldest_unstored_seconds",
            "Age of the oldest message received and not yet stored (0: none).",
            registry=r,
        )
        self._storage_failing = Gauge(
            "seal_ingest_storage_failing", "1 while storing fails because the database does not answer.", registry=r
        )
        self._storage_retries = Counter(
            "seal_ingest_storage_retries",
            "Batches retried because the database did not answer, could not store (full, read-only, I/O) or lacks "
            "the code's schema.",
            registry=r,
        )
        self._verifier_failures = Counter(
            "seal_ingest_verifier_failures",
            "Times the verifier process failed (the ingest then checked the signatures itself).",
            registry=r,
        )
        #: Receive → commit seconds of every message the ingest stored.
        self.commit_latency = Histogram(
            "seal_ingest_commit_seconds",
            "Seconds from receiving a message from the broker to committing what it became.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=r,
        )
        self._alarms_live = Gauge(
            "seal_alarms_live",
            "Open or acknowledged alarms, by kind (as of the last liveness check).",
            ["kind"],
            registry=r,
        )
        self._notifications_sent = Counter(
            "seal_notifications_sent", "Alarm notifications delivered (webhook answered 2xx).", registry=r
        )
        self._notification_attempts_failed = Counter(
            "seal_notification_attempts_failed", "Webhook attempts that failed (retried or given up).", registry=r
        )
        self._notifications_failed = Counter(
            "seal_notifications_failed", "Alarm notifications given up after their last attempt.", registry=r
        )
        self._commands_published = Counter(
            "seal_commands_published",
            "Publish attempts of court commands, by result (accepted: the broker took it; not delivery).",
            ["result"],
            registry=r,
        )
        self._command_answers = Counter(
            "seal_command_answers",
            "command_ack/command_rejected events stored, by what they did.",
            ["outcome"],
            registry=r,
        )
        self._commands_expired = Counter(
            "seal_commands_expired", "Commands that expired without an answer.", registry=r
        )
        self._timestamps = Counter(
            "seal_log_timestamps",
            "Time stamps asked of the TSA for log checkpoints, by result: stamped, or why none was kept "
            "(unreachable, http_error, malformed, refused, unverified).",
            ["result"],
            registry=r,
        )
        self._checkpoints_refused = Counter(
            "seal_log_checkpoints_refused",
            "Rounds at which the log's key refused to sign a checkpoint because the database's tree contradicts one "
            "it signed before (docs/evidence.md, 'When the log has lost checkpoints it signed'), by reason: smaller, "
            "forked, other_log, unreadable, unwritable, damaged.",
            ["reason"],
            registry=r,
        )
        self._settle_failures = Counter(
            "seal_removal_settle_failures", "Removal requests the settler could not settle (an error).", registry=r
        )
        self._live_feed = Counter(
            "seal_live_feed_messages",
            "Messages of the court's live feed, by result: sent, unsent (the broker did not take it: its receivers "
            "see a hole and reload), received, duplicate, malformed (ignored).",
            ["result"],
            registry=r,
        )
        self._live_gaps = Counter(
            "seal_live_gaps",
            "Times the open pages were told to reload because changes of other processes may have been missed, by "
            "reason: disconnected, subscribed (the feed was down a while), hole (a message was missed).",
            ["reason"],
            registry=r,
        )
        self._caught_up_lag = Gauge(
            "seal_ingest_caught_up_lag_seconds",
            "How far the ingest's caught-up mark lags the court's clock, as the liveness check last saw it.",
            registry=r,
        )
        self.caught_up_lag_s = 0.0
        self._live_feed_connected = Gauge(
            "seal_live_feed_connected", "1 while the court's live feed holds an accepted MQTT connection.", registry=r
        )
        self._content_mismatches = Counter(
            "seal_content_mismatches",
            "Stored objects (snapshots, removal proofs) found holding other bytes than the SHA-256 they are named by, "
            "by store.",
            ["store"],
            registry=r,
        )
        self._leftovers = Counter(
            "seal_store_leftovers_removed",
            "Temporary files of writes cut short by a crash, removed from a store's directory at start, by store.",
            ["store"],
            registry=r,
        )
        self._leftover_bytes = Counter(
            "seal_store_leftover_bytes_removed", "Their bytes, by store.", ["store"], registry=r
        )
        self._sign_ins_failed = Counter(
            "seal_sign_ins_failed",
            "Failed sign-ins (passwords and access codes), by kind: unknown_user, unknown_case (not audited: the "
            "text is the caller's), wrong_secret, refused (account disabled, case ended), unknown_client (a reverse "
            "proxy not configured as it must be).",
            ["kind"],
            registry=r,
        )

    def _counted(self, counter: Counter, amount: float = 1) -> None:
        with self._cond:
            counter.inc(amount)
            self._cond.notify_all()

    def count_stored(self) -> None:
        self._counted(self._stored)

    def count_duplicate(self) -> None:
        self._counted(self._duplicates)

    def count_status(self) -> None:
        self._counted(self._status_updates)

    def count_status_stamp_clamped(self) -> None:
        self._counted(self._stamps_clamped)

    def count_snapshot(self) -> None:
        self._counted(self._snapshots)

    def count_rejected(self, reason: str) -> None:
        self._counted(self._rejected.labels(reason=reason))

    def count_quarantine_not_kept(self, scope: str) -> None:
        """A quarantine row was written without its bytes: the budget of ``scope`` (``seal``, ``total``) is used."""
        self._counted(self._quarantine_not_kept.labels(scope=scope))

    def count_quarantine_counted(self, reason: str) -> None:
        self._counted(self._quarantine_counted.labels(reason=reason))

    def quarantine_counted(self) -> dict[str, int]:
        return by_label(self.registry, "seal_quarantine_counted_only", "reason")

    def quarantine_not_kept(self) -> dict[str, int]:
        return by_label(self.registry, "seal_quarantine_bytes_not_kept", "scope")

    def count_failed_sign_in(self, kind: str) -> None:
        self._sign_ins_failed.labels(kind=kind).inc()

    def count_ignored(self) -> None:
        self._counted(self._ignored)

    def count_dropped(self) -> None:
        self._counted(self._dropped)

    def count_properties_dropped(self, _topic: str = "") -> None:
        self._counted(self._properties_dropped)

    def count_retained_cleared(self, result: str) -> None:
        self._counted(self._retained_cleared.labels(result=result))

    def retained_cleared(self) -> dict[str, int]:
        return by_label(self.registry, "seal_retained_cleared", "result")

    def count_storage_retry(self) -> None:
        self._counted(self._storage_retries)

    def count_verifier_failure(self) -> None:
        self._counted(self._verifier_failures)

    def count_notification(self, *, delivered: bool, final: bool) -> None:
        """One webhook attempt: delivered, or failed (``final``: no attempt is left, the notification failed)."""
        if delivered:
            self._counted(self._notifications_sent)
            return
        with self._cond:
            self._notification_attempts_failed.inc()
            if final:
                self._notifications_failed.inc()
            self._cond.notify_all()

    def count_command(self, kind: str, label: str = "", n: int = 1) -> None:
        """A court command was published (``label``: the result), answered (the outcome) or expired."""
        if kind == "published":
            self._counted(self._commands_published.labels(result=label), n)
        elif kind == "answer":
            self._counted(self._command_answers.labels(outcome=label), n)
        elif kind == "expired":
            self._counted(self._commands_expired, n)
        else:
            raise ValueError(f"unknown command metric {kind!r}")

    def count_timestamp(self, result: str) -> None:
        """A checkpoint's time stamp was kept (``stamped``) or not (the reason's class)."""
        self._counted(self._timestamps.labels(result=result))

    def count_checkpoint_refused(self, reason: str) -> None:
        """The checkpointer refused to sign (``reason``: :class:`~server.evidence.errors.CheckpointRefused`'s kind)."""
        self._counted(self._checkpoints_refused.labels(reason=reason))

    def checkpoints_refused(self) -> dict[str, int]:
        return by_label(self.registry, "seal_log_checkpoints_refused", "reason")

    def count_settle_failure(self) -> None:
        self._counted(self._settle_failures)

    def count_live_feed(self, result: str) -> None:
        """A message of the live feed was sent, not sent, received, a duplicate, or malformed."""
        self._counted(self._live_feed.labels(result=result))

    def count_live_gap(self, reason: str) -> None:
        """The pages were told to reload (``reason``: why changes may have been missed)."""
        self._counted(self._live_gaps.labels(reason=reason))

    def set_live_feed_connected(self, connected: bool) -> None:
        self._live_feed_connected.set(int(connected))

    def count_content_mismatch(self, store: str) -> None:
        """An object of ``store`` (its kind: snapshot, removal proof) holds other bytes than its name promises."""
        self._counted(self._content_mismatches.labels(store=store))

    def content_mismatches(self) -> dict[str, int]:
        return by_label(self.registry, "seal_content_mismatches", "store")

    def count_leftovers_removed(self, store: str, files: int, size: int) -> None:
        """``files`` temporary files of ``size`` bytes, left by interrupted writes, were removed from ``store``."""
        self._counted(self._leftovers.labels(store=store), files)
        self._counted(self._leftover_bytes.labels(store=store), size)

    def set_caught_up_lag(self, seconds: float) -> None:
        """The ingest's caught-up mark lags now by ``seconds`` (:mod:`server.marks.marks`)."""
        self.caught_up_lag_s = seconds
        self._caught_up_lag.set(seconds)

    def set_alarms_live(self, counts: Mapping[str, int]) -> None:
        with self._cond:
            self._alarms_live.clear()
            for kind, count in counts.items():
                self._alarms_live.labels(kind=kind).set(count)
            self._cond.notify_all()

    def snapshot(self) -> MetricsSnapshot:
        with self._cond:
            return read_snapshot(self.registry)

    def wait_until(self, predicate: Callable[[MetricsSnapshot], bool], timeout: float) -> bool:
        """Block until ``predicate(snapshot)`` holds or ``timeout`` seconds pass; return whether it holds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(read_snapshot(self.registry)), timeout)

    def exposition(
        self,
        *,
        seals_online: int,
        seals_total: int,
        broker_connected: bool,
        reasons: Iterable[str],
        progress: IngestProgress | None = None,
    ) -> str:
        """The Prometheus text format (version 0.0.4) of the registry, with the gauges only a scrape knows set
        first. Every known reason is listed, at 0 if never seen."""
        with self._lock:
            assert self._seals_online is not None and self._seals_registered is not None, "made without seal gauges"
            self._seals_online.set(seals_online)
            self._seals_registered.set(seals_total)
            self.set_scrape_gauges(broker_connected=broker_connected, reasons=reasons, progress=progress)
            return generate_latest(self.registry).decode("utf-8")

    def set_scrape_gauges(
        self, *, broker_connected: bool, reasons: Iterable[str], progress: IngestProgress | None
    ) -> None:
        """Set the ingest's gauges that only a scrape knows, and list every known reason (at 0 if never seen)."""
        progress = progress or IngestProgress(0, 0.0, None)
        for reason in reasons:
            self._rejected.labels(reason=reason)
        self._broker_connected.set(int(broker_connected))
        self._unstored.set(progress.unstored)
        self._unstored_bytes.set(progress.unstored_bytes)
        self._oldest_unstored.set(round(progress.oldest_unstored_s, 3))
        self._storage_failing.set(int(progress.storage_failing_since is not None))
