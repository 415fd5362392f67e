"""The seals' answers to court commands (``command_ack``, ``command_rejected``) stored by an ingest batch, applied to
their commands once the seals' rows are locked (:class:`~server.ingest.batch.IngestBatch`).

Each answer is applied in a savepoint: a defect of the command bookkeeping met on what a seal signed (a value of a
shape nobody foresaw) leaves that command as it was, is logged with its trace and counted ``failed`` — the signed
event is stored all the same. Before, such a defect rolled back the event with it: never stored, it left a hole in
the seal's chain and was sent again without end. A database error is no such defect: it fails the batch, which is
tried again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from seal_protocol import Envelope
from server.alarms.book import AlarmBook
from server.alarms.event_details import event_marks
from server.commands.failures import Settled, on_settled
from server.commands.service import DECIDING_ANSWERS, AnswerOutcome, answered_command_id, apply_answer
from server.ingest.clock_word import clock_word

logger = logging.getLogger(__name__)

#: A stored answer: its place in the batch, its event, the case it was stored in, when received, and its row's id.
Answer = tuple[int, Envelope, str, datetime, Callable[[], int]]


def apply_answers(
    session: Session, alarms: AlarmBook, answers: Sequence[Answer]
) -> list[tuple[int, AnswerOutcome | None, str]]:
    """Apply ``answers`` to their commands, locking them by command id, after the seals' rows (the lock order of
    :mod:`.rows`: an unbinding locks the seal, then its pending commands); then their arm and disarm alarms
    (:func:`~server.commands.failures.on_settled`: the seal's live alarms were locked when its event was stored,
    before the seals' rows). An answer settles its command only if it is stored in the command's case (the case the
    batch stored it in, carried with the answer however that case was decided: the binding's time or the chain's
    placement; no query). Returns each answer's place, what it did, and its result's detail."""
    settled: list[Settled] = []
    details: list[tuple[int, AnswerOutcome | None, str]] = []
    for place, envelope, case_no, at, row_id in sorted(answers, key=lambda answer: _command_id(answer[1])):
        answer = _apply(session, envelope, case_no, at)
        if answer in DECIDING_ANSWERS:
            marks = event_marks(envelope, at, clock_word(session, envelope))
            settled.append(Settled(_command_id(envelope), answer, at, row_id, marks))
        details.append((place, answer, f"command {answered_command_id(envelope)}: {answer}"))
    on_settled(alarms, settled)
    return details


def _apply(session: Session, envelope: Envelope, case_no: str, at: datetime) -> AnswerOutcome | None:
    try:
        with session.begin_nested():
            return apply_answer(session, envelope, case_no=case_no, at=at)
    except SQLAlchemyError:
        raise
    except Exception:
        logger.exception(
            "seal %s event seq %d: its answer could not be applied to command %s (stored, the command unchanged)",
            envelope.device_id,
            envelope.seq,
            answered_command_id(envelope),
        )
        return AnswerOutcome.FAILED


def _command_id(envelope: Envelope) -> int:
    return answered_command_id(envelope) or 0
