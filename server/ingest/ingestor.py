"""The ingest's transactions: a batch of messages in one transaction, or one by one when that fails.

:meth:`Ingestor.ingest` returns only once every message's outcome is committed: the caller may then acknowledge
them all. A row the database refuses (e.g. a value PostgreSQL cannot store) is quarantined on its own instead of
holding back the others. If the database cannot take even a quarantine row, :class:`StorageUnavailable` is raised
and the caller must acknowledge nothing from that batch; storing it again later is safe (duplicates are no-ops).
Outcomes are logged and counted only after their commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from server.commands.service import AnswerOutcome
from server.config import AlarmSettings
from server.db import SessionFactory
from server.errors import StorageUnavailable
from server.ingest.batch import IngestBatch, VerifyKeyCache, device_of
from server.ingest.results import IngestResult, Message, Outcome, Reason
from server.metrics import IngestMetrics
from server.snapshots import SnapshotStore

logger = logging.getLogger(__name__)


class Ingestor:
    """Verifies and stores messages; one instance per ingest worker (not thread-safe)."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        metrics: IngestMetrics,
        snapshot_dir: Path,
        alarms: AlarmSettings | None = None,
    ) -> None:
        self._session_factory = session_factory
        self.metrics = metrics
        self.snapshots = SnapshotStore(snapshot_dir)
        self._keys = VerifyKeyCache()
        self._fold_window = timedelta(seconds=(alarms or AlarmSettings()).fold_window_s)

    def ingest(self, messages: Sequence[Message]) -> list[IngestResult]:
        """Store ``messages`` and return their outcomes, all committed; raise :class:`StorageUnavailable`."""
        if not messages:
            return []
        try:
            with self._session_factory() as session:
                results = self._batch(session).apply(messages)
                session.commit()
        except SQLAlchemyError as exc:
            logger.warning("batch of %d messages failed (%s); storing them one by one", len(messages), exc)
            return [self._ingest_alone(message) for message in messages]
        for message, result in zip(messages, results, strict=True):
            self._record(message, result)
        return results

    def _batch(self, session: Session) -> IngestBatch:
        return IngestBatch(session, keys=self._keys, snapshots=self.snapshots, fold_window=self._fold_window)

    def _ingest_alone(self, message: Message) -> IngestResult:
        reason, detail = Reason.STORAGE_ERROR, ""
        # A unique-constraint race with another worker resolves itself on the second try (as a duplicate).
        for _attempt in range(2):
            try:
                with self._session_factory() as session:
                    [result] = self._batch(session).apply([message])
                    session.commit()
                self._record(message, result)
                return result
            except (IntegrityError, DataError) as exc:
                cause = exc.orig or exc
                detail = f"storage error: {type(cause).__name__}: {cause}"
            except SQLAlchemyError as exc:
                raise StorageUnavailable(f"database unavailable: {exc}") from exc
            except StorageUnavailable:
                raise
            except Exception as exc:  # a bug must not block the queue: keep the message, log the traceback
                logger.exception("internal error on a message from %s", message.topic)
                reason, detail = Reason.INTERNAL_ERROR, f"internal error: {type(exc).__name__}: {exc}"
                break
        result = IngestResult(Outcome.QUARANTINED, device_of(message.topic), reason, detail[:2000])
        try:
            with self._session_factory() as session:
                IngestBatch.quarantine(session, message, result)
                session.commit()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(f"cannot store a quarantine row: {exc}") from exc
        self._record(message, result)
        return result

    def _record(self, message: Message, result: IngestResult) -> None:
        """Log and count a committed outcome."""
        match result.outcome:
            case Outcome.STORED:
                self.metrics.count_stored()
                if result.command_answer is not None:
                    self._record_answer(message, result)
            case Outcome.DUPLICATE:
                logger.info("duplicate from %s ignored: %s", message.topic, result.detail)
                self.metrics.count_duplicate()
            case Outcome.STATUS:
                self.metrics.count_status()
            case Outcome.SNAPSHOT:
                self.metrics.count_snapshot()
            case Outcome.QUARANTINED:
                assert result.reason is not None
                logger.warning("quarantined a message on %r: %s: %s", message.topic, result.reason, result.detail)
                self.metrics.count_rejected(result.reason)
            case Outcome.IGNORED:
                pass

    def _record_answer(self, message: Message, result: IngestResult) -> None:
        assert result.command_answer is not None
        if result.command_answer in (AnswerOutcome.ACKNOWLEDGED, AnswerOutcome.REJECTED):
            logger.info("seal %s answered: %s", result.device_id, result.detail)
        else:
            logger.warning("answer from %s stored as an event, no command changed: %s", message.topic, result.detail)
        self.metrics.count_command("answer", result.command_answer)
