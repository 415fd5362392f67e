"""RFC 3161 time stamps of the log's signed checkpoints, kept in ``log_timestamps``.

With ``[evidence] tsa_url`` set, :class:`Timestamper` asks the TSA (:class:`~server.evidence.tsa.TsaClient`) for a
token over SHA-256 of each checkpoint's note bytes, as stored (UTF-8), once the checkpoint is committed: the
checkpointer wakes it after each one it signs. A token is kept only once it verifies. A TSA that is down or answers
wrongly costs a log line and the metric ``seal_log_timestamps{result=<why>}``; the checkpoints stay unstamped and are
asked for again on the next rounds (newest first, a few per round). A checkpoint is never held back for its stamp.

The export asks for a fresh checkpoint's token at once with :func:`stamp_checkpoint` and reads one with
:func:`timestamp_of`.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.base import utc_now
from server.core.db import SessionFactory
from server.core.metrics import IngestMetrics
from server.core.rounds import RoundLoop
from server.errors import found
from server.evidence.errors import TimestampFailed
from server.evidence.models import LogCheckpoint, LogTimestamp
from server.evidence.tsa import Stamp, TsaClient

logger = logging.getLogger(__name__)

#: At most this many unstamped checkpoints are sent to the TSA in one round (newest first): after an outage the
#: backlog is worked off over the following rounds rather than in one burst.
STAMPS_PER_ROUND = 8


def timestamp_of(session: Session, checkpoint: LogCheckpoint) -> tuple[bytes, bytes] | None:
    """The kept time stamp of ``checkpoint``: (the DER TimeStampResp as the TSA returned it, the TSA's chain as
    PEM), or ``None`` if it has none (yet)."""
    row = _row_of(session, checkpoint.id)
    return None if row is None else (row.response, row.chain_pem.encode("ascii"))


def stamp_checkpoint(session_factory: SessionFactory, tree_size: int, client: TsaClient) -> tuple[bytes, bytes]:
    """The time stamp of the (committed) checkpoint of ``tree_size`` leaves, as :func:`timestamp_of` gives it: the
    kept one, or one asked of the TSA now, verified, kept and committed. :class:`TimestampFailed` if the TSA gives no
    token that verifies; :class:`~server.errors.NotFound` if there is no such checkpoint. For the export, which
    makes a fresh checkpoint and wants its token at once.

    No transaction is open while the TSA is asked; call it with none open either (on SQLite every transaction
    holds the database's write lock)."""
    with session_factory() as session:
        checkpoint = session.scalars(select(LogCheckpoint).where(LogCheckpoint.tree_size == tree_size)).one_or_none()
        checkpoint = found(checkpoint, f"no checkpoint of tree size {tree_size}")
        kept = timestamp_of(session, checkpoint)
        checkpoint_id, note = checkpoint.id, checkpoint.note
    if kept is not None:
        return kept
    stamp = client.stamp(note.encode("utf-8"))
    with session_factory() as session:
        row = keep_stamp(session, checkpoint_id, stamp, client.url)
        try:
            session.commit()
        except IntegrityError:  # the time stamper kept one for it meanwhile: that one is it
            session.rollback()
            other = found(_row_of(session, checkpoint_id), "the checkpoint's time stamp vanished")
            return other.response, other.chain_pem.encode("ascii")
        return row.response, row.chain_pem.encode("ascii")


def keep_stamp(session: Session, checkpoint_id: int, stamp: Stamp, tsa_url: str) -> LogTimestamp:
    """Add the verified ``stamp`` of the checkpoint ``checkpoint_id`` to ``session``."""
    verdict = stamp.verdict
    assert verdict.gen_time is not None and verdict.tsa_subject is not None  # a verdict that holds names both
    row = LogTimestamp(
        checkpoint_id=checkpoint_id,
        response=stamp.response,
        chain_pem=stamp.chain_pem.decode("ascii"),
        gen_time=verdict.gen_time,
        tsa_url=tsa_url,
        tsa_subject=verdict.tsa_subject,
        pinned=verdict.pinned,
        obtained_at=utc_now(),
    )
    session.add(row)
    return row


def checkpoint_of_size(session: Session, tree_size: int | None) -> LogCheckpoint | None:
    """The checkpoint of ``tree_size`` leaves or, for ``None``, the latest one that has a time stamp."""
    if tree_size is not None:
        return session.scalars(select(LogCheckpoint).where(LogCheckpoint.tree_size == tree_size)).one_or_none()
    query = select(LogCheckpoint).join(LogTimestamp, LogTimestamp.checkpoint_id == LogCheckpoint.id)
    return session.scalars(query.order_by(LogCheckpoint.tree_size.desc()).limit(1)).one_or_none()


def _row_of(session: Session, checkpoint_id: int) -> LogTimestamp | None:
    return session.scalars(select(LogTimestamp).where(LogTimestamp.checkpoint_id == checkpoint_id)).one_or_none()


class Timestamper:
    """Every ``interval_s`` — or at once after :meth:`wake` — asks the TSA for the tokens of the checkpoints that
    have none, newest first, up to :data:`STAMPS_PER_ROUND`; a failure ends the round."""

    def __init__(
        self, session_factory: SessionFactory, client: TsaClient, *, metrics: IngestMetrics, interval_s: float
    ) -> None:
        self._session_factory = session_factory
        self._client = client
        self._metrics = metrics
        self._failing: str | None = None  # the kind of the last failure, while the TSA keeps failing
        self._loop = RoundLoop("log-timestamper", self.run_once, interval_s)

    def run_once(self) -> int:
        """Stamp the unstamped checkpoints (a few); how many were stamped. No transaction is open while the TSA is
        asked."""
        stamped = 0
        for checkpoint_id, tree_size, note in self._unstamped():
            try:
                stamp = self._client.stamp(note.encode("utf-8"))
            except TimestampFailed as exc:
                self._failed(tree_size, exc)
                return stamped
            with self._session_factory() as session:
                row = keep_stamp(session, checkpoint_id, stamp, self._client.url)
                try:
                    session.commit()
                except IntegrityError:  # another server's worker kept a token for it first
                    session.rollback()
                    logger.debug("checkpoint at tree size %d was stamped by another worker", tree_size)
                    continue
                self._stamped(tree_size, row)
            stamped += 1
        return stamped

    def _unstamped(self) -> list[tuple[int, int, str]]:
        with self._session_factory() as session:
            query = (
                select(LogCheckpoint.id, LogCheckpoint.tree_size, LogCheckpoint.note)
                .outerjoin(LogTimestamp, LogTimestamp.checkpoint_id == LogCheckpoint.id)
                .where(LogTimestamp.id.is_(None))
                .order_by(LogCheckpoint.tree_size.desc())
                .limit(STAMPS_PER_ROUND)
            )
            return [(row.id, row.tree_size, row.note) for row in session.execute(query)]

    def _failed(self, tree_size: int, exc: TimestampFailed) -> None:
        self._metrics.count_timestamp(exc.kind)
        level = logging.DEBUG if self._failing == exc.kind else logging.WARNING
        logger.log(
            level, "no time stamp for the checkpoint at tree size %d (asked again next round): %s", tree_size, exc
        )
        self._failing = exc.kind

    def _stamped(self, tree_size: int, row: LogTimestamp) -> None:
        self._metrics.count_timestamp("stamped")
        if self._failing is not None:
            logger.info("the TSA answers again: time stamps resume")
            self._failing = None
        pinned = "pinned root" if row.pinned else "its own root, unpinned"
        logger.info(
            "checkpoint at tree size %d time-stamped by %s at %s (%s)",
            tree_size,
            row.tsa_subject,
            row.gen_time.isoformat(),
            pinned,
        )

    def wake(self) -> None:
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
