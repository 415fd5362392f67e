"""The ingest's transactions: a batch of messages in one transaction, or one by one when that fails.

:meth:`Ingestor.ingest` returns only once every message's outcome is committed: the caller may then acknowledge
them all. A failure is the fault of the batch's messages — a row the database refuses, or anything else raised
while decoding, checking or deriving rows from a message — unless the database does not answer, or its error
blames the storage (a full disk, an I/O error, a read-only or locked database, a schema lacking a table or column
the code names: :func:`storage_fault`): then, and only then, :class:`StorageUnavailable` is raised, the caller
acknowledges nothing from that batch and retries it later (storing it again is safe: duplicates are no-ops). Otherwise
the batch is rolled back and its messages are stored one by one, each in its own transaction, so the message at fault
is quarantined alone — with ``storage_error`` or ``internal_error`` and the exception's class — and the others are
stored as usual (and a moved seal's events that only the batch's later ones place are placed after that pass:
:mod:`.case_retry`). Outcomes are logged and counted only after their commit.

A transaction that lost a race with another worker — PostgreSQL's deadlock or serialization failure (SQLSTATE
``40P01``, ``40001``) — is no message's fault: it is tried again (the batch, then each message alone), and if it
keeps losing, :class:`StorageUnavailable` is raised rather than any message quarantined.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from seal_protocol import Envelope
from server.commands.service import DECIDING_ANSWERS
from server.config import AlarmSettings, IngestSettings, MqttSettings
from server.core.db import SessionFactory, lost_a_race, storage_fault
from server.core.metrics import IngestMetrics
from server.errors import StorageUnavailable
from server.evidence.queries import named_pictures
from server.evidence.snapshot_files import SnapshotStore
from server.ingest.batch import IngestBatch
from server.ingest.case_retry import place_refused
from server.ingest.checks import Opening, Prepared, prepare, prepare_all
from server.ingest.quarantine_rows import QUARANTINE_DETAIL_LIMIT, QuarantineBudget, add_copies, stored_topic
from server.ingest.refusal_count import CountedLog, RefusalBudget
from server.ingest.results import IngestResult, Message, Outcome, Reason, account_of, storable_text
from server.ingest.seal_cache import IngestCache
from server.ingest.snapshot_writes import write_snapshots
from server.ingest.verifier import ProcessVerifier, Verifier

logger = logging.getLogger(__name__)

#: How many times a transaction that keeps losing races is tried before the storage counts as unavailable.
RACE_ATTEMPTS = 5
#: Most pictures the events of one transaction may name (each event names at most MAX_NAMED_SNAPSHOTS, each name is
#: a row written in the transaction): a batch naming more is stored in several transactions (:func:`_parts_by_names`).
NAMES_PER_TRANSACTION = 2048


class Ingestor:
    """Verifies and stores messages; one instance per ingest worker (not thread-safe).

    ``on_answer`` is called (without arguments, on the ingest's thread) after a seal's answer to a command has been
    committed — whoever follows commands learns of it without the ingest knowing who they are — and ``on_armed``
    likewise after an event of a seal saying it is armed (a request disarmed may need its seal's disarm again).
    ``on_commit`` is called likewise with the outcomes of every committed batch and the (device_id, case_no) of every
    alarm it opened, folded into, updated or closed (the pages' live bus learns what changed:
    :func:`~server.ingest.changes.live_changes`).
    ``gap_wait_s``: how old a gap in a seal's chain is when it raises ``missing_events`` (:mod:`.gap_wait`): another
    worker sharing the subscription may be storing the missing events; 0 with one worker. The pictures go to
    ``snapshots`` (or, where no other store is needed, the directory ``snapshot_dir``). ``verifier``: who checks the
    signatures (:mod:`server.ingest.verifier`; default: this thread); :meth:`close` stops it."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        metrics: IngestMetrics,
        snapshots: SnapshotStore | None = None,
        snapshot_dir: Path | None = None,
        alarms: AlarmSettings | None = None,
        on_answer: Callable[[], None] | None = None,
        on_armed: Callable[[], None] | None = None,
        on_commit: Callable[[Sequence[IngestResult], set[tuple[str, str]]], None] | None = None,
        gap_wait_s: float = 0.0,
        verifier: Verifier | None = None,
        ingest: IngestSettings | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._on_answer = on_answer
        self._on_armed = on_armed
        self._on_commit = on_commit
        self._alarms_touched: set[tuple[str, str]] = set()  # by the transactions committed since on_commit was told
        self.metrics = metrics
        if (snapshots is None) == (snapshot_dir is None):
            raise TypeError("give the snapshots' store, or the directory of one (snapshot_dir), not both")
        if snapshots is None:
            assert snapshot_dir is not None
            snapshots = SnapshotStore(snapshot_dir, on_mismatch=metrics.count_content_mismatch)
        self.snapshots = snapshots
        self.cache = IngestCache()
        alarms = alarms or AlarmSettings()
        self._fold_window = timedelta(seconds=alarms.fold_window_s)
        self._offline_grace = timedelta(seconds=alarms.offline_grace_s)
        self._gap_wait = timedelta(seconds=gap_wait_s)
        self.verifier = verifier or Verifier()
        ingest = ingest or IngestSettings()
        self.quarantine_budget = QuarantineBudget(
            per_seal=ingest.quarantine_seal_bytes,
            total=ingest.quarantine_total_bytes,
            on_refused=metrics.count_quarantine_not_kept,
        )
        self.unnamed_budget = ingest.unnamed_snapshot_seal_bytes  # :mod:`.unnamed_budget`
        self.refusal_budget = RefusalBudget(per_window=ingest.quarantine_seal_rows, window_s=ingest.quarantine_window_s)
        self._counted_log = CountedLog()

    @property
    def session_factory(self) -> SessionFactory:
        return self._session_factory

    def close(self) -> None:
        """Stop the verifier process for good; also during another thread's batch (it checks its signatures)."""
        self.verifier.close()

    def opening(self, messages: Sequence[Message], *, ahead: bool = False) -> Opening | None:
        """Hand the events of a batch to the verifier (``ahead``: all of them, the batch to be stored after the one
        in hand, to be opened meanwhile); give the result to :meth:`ingest`. None if that fails: :meth:`ingest` then
        prepares the batch itself, where a message that makes the checks raise is quarantined alone."""
        try:
            return Opening(messages, self.cache, self.verifier, ahead=ahead)
        except Exception:  # noqa: BLE001 - a defect of the checks: ingest() meets it again, and deals with it there
            return None

    def ingest(self, messages: Sequence[Message], opening: Opening | None = None) -> list[IngestResult]:
        """Store ``messages`` and return their outcomes, all committed; raise :class:`StorageUnavailable` (whose
        ``stored`` has the outcomes of the first messages if they were committed before the database went away).
        ``opening``: the messages' checks begun by :meth:`opening`."""
        if not messages:
            if opening is not None:
                opening.abandon()
            return []
        attempt = 1
        written: set[str] = set()  # the snapshots written to their store (once: a batch tried again has them)
        while True:
            try:
                # Before the transaction (no lock held), inside the try: a message that makes the checks raise is
                # quarantined alone below, instead of failing the whole batch again and again (a stalled stream).
                # The pictures are written to their store here too: a slow store never holds the database.
                if opening is not None:
                    prepared, opening = opening.prepared(), None
                else:
                    prepared = prepare_all(messages, self.cache, self.verifier)
                parts = _parts_by_names(prepared)
                if len(parts) > 1:
                    return self._ingest_parts(messages, parts)
                prepared = write_snapshots(
                    self._session_factory, self.snapshots, messages, prepared, written, self.unnamed_budget
                )
                with self._session_factory() as session:
                    batch = self._batch(session, messages, written)
                    results = batch.apply(messages, prepared)
                    session.commit()
                self._alarms_touched |= batch.alarms.touched
                self.cache.committed(batch.chain.heads(), batch.frontier)
                break
            except StorageUnavailable:
                self.cache.frontier = None  # the database went away: what it holds when it is back is read anew
                raise
            except Exception as exc:  # whose fault it is is decided right below
                self.cache.frontier = None
                self._raise_if_database_down(exc)
                if lost_a_race(exc) and attempt < RACE_ATTEMPTS:
                    logger.info("batch of %d messages lost a race (%s); trying it again", len(messages), exc)
                    attempt += 1
                    continue
                return self._ingest_one_by_one(messages, exc, written)
        for message, result in zip(messages, results, strict=True):
            self._record(message, result)
        self._committed(results)
        return results

    def _ingest_parts(self, messages: Sequence[Message], parts: list[range]) -> list[IngestResult]:
        """``messages`` in several transactions, in order, each naming at most :data:`NAMES_PER_TRANSACTION`
        pictures (one event naming more is alone in its own): a seal's signed events cannot make one transaction,
        and SQLite's one write lock, last longer than that much filing. Each part is checked again (rare: only
        events naming many pictures are split)."""
        logger.info("batch of %d messages names many pictures: stored in %d transactions", len(messages), len(parts))
        results: list[IngestResult] = []
        for part in parts:
            try:
                results.extend(self.ingest(messages[part.start : part.stop]))
            except StorageUnavailable as exc:  # the parts before it are committed: done, not to be stored again
                raise StorageUnavailable(str(exc), stored=[*results, *exc.stored]) from exc
        return results

    def _ingest_one_by_one(self, messages: Sequence[Message], exc: Exception, written: set[str]) -> list[IngestResult]:
        logger.warning(
            "batch of %d messages failed (%s: %s); storing them one by one",
            len(messages),
            type(exc).__name__,
            exc,
        )
        results: list[IngestResult] = []
        try:
            for message in messages:
                results.append(self._ingest_alone(message, written))
            place_refused(messages, results, lambda message: self._ingest_alone(message, written))  # :mod:`.case_retry`
        except StorageUnavailable as exc:  # those before it are committed: done, not to be stored again
            self._committed(results)
            raise StorageUnavailable(str(exc), stored=results) from exc
        self._committed(results)
        return results

    def _batch(self, session: Session, messages: Sequence[Message], written: set[str]) -> IngestBatch:
        return IngestBatch(
            session,
            cache=self.cache,
            snapshots=self.snapshots,
            fold_window=self._fold_window,
            offline_grace=self._offline_grace,
            gap_wait=self._gap_wait,
            written_snapshots=written,
            quarantine_budget=self.quarantine_budget,
            refusal_budget=self.refusal_budget,
            unnamed_budget=self.unnamed_budget,
        )

    def _committed(self, results: list[IngestResult]) -> None:
        """Tell ``on_commit`` (after the commit: never inside the transaction); its failure stops no ingest."""
        alarms, self._alarms_touched = self._alarms_touched, set()
        if self._on_commit is None:
            return
        try:
            self._on_commit(results, alarms)
        except Exception:  # a listener's bug must not hold up the evidence
            logger.exception("the ingest's on_commit listener failed")

    def _ingest_alone(self, message: Message, written: set[str]) -> IngestResult:
        failure: Exception | None = None
        # A unique-constraint race resolves itself on the second try (a duplicate); a lost race (a deadlock, a
        # serialization failure) is not counted against the message: tried again, RACE_ATTEMPTS in all.
        faults, races = 0, 0
        while faults < 2:
            try:
                alone = [prepare(message, self.cache)]
                prepared = write_snapshots(
                    self._session_factory, self.snapshots, [message], alone, written, self.unnamed_budget
                )
                with self._session_factory() as session:
                    batch = self._batch(session, [message], written)
                    [result] = batch.apply([message], prepared)
                    session.commit()
                self._alarms_touched |= batch.alarms.touched
                self.cache.committed(batch.chain.heads(), batch.frontier)
                self._record(message, result)
                return result
            except StorageUnavailable:
                self.cache.frontier = None
                raise
            except Exception as exc:  # the message's own fault unless the database is down or another worker won
                self.cache.frontier = None
                self._raise_if_database_down(exc)
                if lost_a_race(exc):
                    races += 1
                    if races >= RACE_ATTEMPTS:
                        raise StorageUnavailable(f"a message keeps losing races with other workers: {exc}") from exc
                    continue
                failure = exc
                faults += 1
        assert failure is not None
        result = self._failure_result(message, failure)
        self._store_quarantine(message, result)
        self._record(message, result)
        return result

    @staticmethod
    def _failure_result(message: Message, failure: Exception) -> IngestResult:
        if isinstance(failure, SQLAlchemyError):
            cause = getattr(failure, "orig", None) or failure
            reason = Reason.STORAGE_ERROR
            detail = f"storage error: {type(cause).__name__}: {cause}"
        else:
            reason = Reason.INTERNAL_ERROR
            detail = f"internal error: {type(failure).__name__}: {failure}"
        if not isinstance(failure, IntegrityError | DataError):  # a bug, or a database refusal to look into
            logger.error("%s on a message from %r", detail[:200], _topic(message), exc_info=failure)
        return IngestResult(Outcome.QUARANTINED, account_of(message.topic), reason, detail)

    def _store_quarantine(self, message: Message, result: IngestResult) -> None:
        """Commit ``result``'s quarantine row; raise :class:`StorageUnavailable` only if the database is down (or the
        row loses a race every time: a lost race is tried again, never taken for a refusal of the bytes).

        Should the database refuse the row itself, a row with the topic and the size but without the bytes is
        stored instead, so that even then one message cannot hold up the others.
        """
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                with self._session_factory() as session:
                    add_copies(session, message, result, budget=self.quarantine_budget)
                    session.commit()
                return
            except SQLAlchemyError as exc:
                self._raise_if_database_down(exc)
                if lost_a_race(exc):  # not a refusal of the bytes: try again (and at last, count as unavailable)
                    if attempt == RACE_ATTEMPTS:
                        raise StorageUnavailable(f"a quarantine row keeps losing races: {exc}") from exc
                    continue
                logger.error("the quarantine row of a message from %r was refused: %s", _topic(message), exc)
                refusal = f"{result.detail[:1000]} (its bytes could not be kept: {type(exc).__name__})"
                break
        try:
            with self._session_factory() as session:
                add_copies(session, message, result, detail=refusal, keep_raw=False)
                session.commit()
        except SQLAlchemyError as exc:
            raise StorageUnavailable(f"cannot store a quarantine row: {exc}") from exc

    def _raise_if_database_down(self, exc: Exception) -> None:
        """Raise :class:`StorageUnavailable` from ``exc`` if it blames the storage or the database does not answer."""
        if not isinstance(exc, SQLAlchemyError):
            return
        if (fault := storage_fault(exc)) is not None:
            raise StorageUnavailable(f"the storage is failing ({fault}): {getattr(exc, 'orig', exc)}") from exc
        try:
            with self._session_factory() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as probe:
            raise StorageUnavailable(f"database unavailable: {probe}") from exc

    def _record(self, message: Message, result: IngestResult) -> None:
        """Log and count a committed outcome. The log line says what a quarantine row keeps: the topic and the detail
        cut to their columns (a topic may take 64 KiB, and a refusal names it)."""
        if result.counted_only:  # past its account's rows: one line a minute per account (:mod:`.refusal_count`)
            assert result.reason is not None
            self._counted_log.counted(result.device_id, result.reason)
            self.metrics.count_rejected(result.reason)
            self.metrics.count_quarantine_counted(result.reason)
            return
        topic, detail = _topic(message), storable_text(result.detail, QUARANTINE_DETAIL_LIMIT)
        match result.outcome:
            case Outcome.STORED:
                self.metrics.count_stored()
                if result.command_answer is not None:
                    self._record_answer(message, result)
                if result.says_armed and self._on_armed is not None:
                    self._on_armed()
            case Outcome.DUPLICATE:
                logger.info("duplicate from %s ignored: %s", topic, detail)
                self.metrics.count_duplicate()
            case Outcome.STATUS:
                self.metrics.count_status()
                if result.stamp_clamped:  # a seal's clock far ahead, or a forged status (they are not signed)
                    logger.warning("status of %s stamped in the future: %s", result.device_id, detail)
                    self.metrics.count_status_stamp_clamped()
            case Outcome.SNAPSHOT:
                self.metrics.count_snapshot()
            case Outcome.QUARANTINED:
                assert result.reason is not None
                logger.warning("quarantined a message on %r: %s: %s", topic, result.reason, detail)
                self.metrics.count_rejected(result.reason)
            case Outcome.IGNORED:
                logger.info("ignored a message on %r: %s", topic, detail)
                self.metrics.count_ignored()

    def _record_answer(self, message: Message, result: IngestResult) -> None:
        assert result.command_answer is not None
        if result.command_answer in DECIDING_ANSWERS:
            logger.info("seal %s answered: %s", result.device_id, result.detail)
            if self._on_answer is not None:
                self._on_answer()
        else:
            logger.warning("answer from %s stored as an event, no command changed: %s", message.topic, result.detail)
        self.metrics.count_command("answer", result.command_answer)


def _topic(message: Message) -> str:
    """The message's topic as logged: as its quarantine row keeps it."""
    return stored_topic(message.topic)


def verifier_for(settings: MqttSettings, metrics: IngestMetrics) -> Verifier:
    """The signature checker ``[mqtt] verifier_process`` asks for."""
    if settings.verifier_process:
        return ProcessVerifier(on_failure=metrics.count_verifier_failure)
    return Verifier()


def _parts_by_names(prepared: Sequence[Prepared]) -> list[range]:
    """The batch's messages in consecutive parts whose events name at most :data:`NAMES_PER_TRANSACTION` pictures
    together (an event naming more than that alone); one part in the usual case."""
    parts: list[range] = []
    start, names = 0, 0
    for place, one in enumerate(prepared):
        checked = one.checked
        if not isinstance(checked, Envelope) or "snapshots" not in checked.payload:
            continue
        count = len(named_pictures(checked.payload))
        if names + count > NAMES_PER_TRANSACTION and place > start:
            parts.append(range(start, place))
            start, names = place, 0
        names += count
    parts.append(range(start, len(prepared)))
    return parts
