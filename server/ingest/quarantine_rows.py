"""Writing the quarantine: one row per (bytes, topic, reason), whose ``copies`` counts every copy received, exactly,
however many workers receive them.

A batch collects its refused messages (:class:`QuarantineCopies`) and writes them at its end, in key order (the lock
order of :mod:`server.ingest.rows`): per key, ``copies = copies + n`` in the database, not in Python, and an insert
only if no row was updated. On PostgreSQL a transaction-scoped advisory lock on the bytes' hash, taken first, makes
that update-or-insert atomic: a worker about to insert the same key waits, then finds the row and counts into it.
On SQLite a writing transaction holds the database's write lock from its ``BEGIN`` (:mod:`server.core.db`).

The bytes kept have a budget (:class:`QuarantineBudget`, ``[ingest] quarantine_seal_bytes`` per seal account and
``quarantine_total_bytes`` in all): a seal's MQTT password alone can send distinct garbage without end, and a full
disk would stop every seal's ingest. Past it a new row is still written — reason, topic, size, SHA-256, detail — but
without the bytes, and that is logged, counted (``seal_quarantine_bytes_not_kept_total``) and said in its detail.
Such a message is not receipted (its result's ``bytes_kept`` is False): the seal keeps it, as the court does not, and
sends it again. A later copy is counted on that row and fills its bytes in if the budget allows them by then (the
operator raised it, or rows were deleted): counted against the budget, said in the row's detail, and receipted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Integer, Table, bindparam, case, event, func, select, text, update
from sqlalchemy.orm import Session, SessionTransaction

from server.alarms.book import AlarmBook
from server.ingest.models import QuarantinedMessage
from server.ingest.refusal_count import SIGNED_REASONS, Counted, RefusalBudget, Window, raise_flood_alarm, write_counts
from server.ingest.results import IngestResult, Message, Outcome, storable, storable_text

#: A quarantined message is kept up to this many bytes (its full size is recorded).
QUARANTINE_RAW_LIMIT = 256 * 1024
#: The quarantine's text columns are cut to these many characters (a longer topic keeps its hash: :func:`stored_topic`).
QUARANTINE_TOPIC_LIMIT = 512
QUARANTINE_DETAIL_LIMIT = 2000
#: The first key of the PostgreSQL advisory locks of quarantine rows ("quar"); the second is from the bytes' hash.
#: Two-key advisory locks never conflict with one-key ones such as the log's writer lock.
QUARANTINE_LOCK_CLASS = 0x7175_6172

_QUARANTINE = cast(Table, QuarantinedMessage.__table__)
_Q = _QUARANTINE.c
_LAST = func.coalesce(_Q.last_received_at, _Q.received_at)
_AT = bindparam("b_at", type_=_Q.last_received_at.type)
_SAME = (_Q.sha256 == bindparam("b_sha256"), _Q.reason == bindparam("b_reason"), _Q.topic == bindparam("b_topic"))
_COUNT_COPIES = (  # into the oldest row of the key: rows from before copies were counted atomically may be several
    update(_QUARANTINE)
    .where(_Q.id == select(func.min(_Q.id)).where(*_SAME).scalar_subquery())
    .values(
        copies=_Q.copies + bindparam("b_copies"),
        last_received_at=case((_LAST > _AT, _LAST), else_=_AT),
    )
)
#: A row of the key (the bindparams of ``_SAME``) that keeps all of its bytes.
_HOLDS = select(_Q.id).where(*_SAME, func.length(_Q.raw) == _Q.size).limit(1)
_FILL_NOTE = bindparam("b_note", type_=_Q.detail.type)
_FILL = (  # the bytes of a copy into the row ``_COUNT_COPIES`` counted it on, which did not keep them
    update(_QUARANTINE)
    .where(_Q.id == select(func.min(_Q.id)).where(*_SAME).scalar_subquery())
    .values(
        raw=bindparam("b_raw", type_=_Q.raw.type),
        detail=func.substr(_Q.detail, 1, bindparam("b_detail_kept", type_=Integer)) + _FILL_NOTE,
    )
)
_LOCK = text("SELECT pg_advisory_xact_lock(CAST(:class_key AS integer), CAST(:key AS integer))")

Key = tuple[str, str, str]  # (sha256, topic as stored, reason)

logger = logging.getLogger(__name__)

_COUNTED, _WATCHED = "quarantine_bytes_counted", "quarantine_budget_watches"  # keys of ``Session.info``
#: The bytes each seal account's quarantine rows hold (rows of topics under no device id: one account, ``None``).
_KEPT = select(_Q.device_id, func.coalesce(func.sum(func.length(_Q.raw)), 0)).group_by(_Q.device_id)


class QuarantineBudget:
    """How many bytes the quarantine may keep: ``per_seal`` per seal account, ``total`` in all. The bytes kept are
    read from the database at the first use, then counted here, and read again every ``refresh_s`` seconds or once
    this process has kept an eighth of ``total`` since (other workers keep bytes too; rows may be deleted): with W
    workers, the quarantine holds at most ``total`` plus W eighths of it. ``on_refused(scope)``: bytes not kept,
    ``scope`` ``seal`` or ``total``. Thread-safe use is not needed: one batch at a time per ingestor."""

    def __init__(
        self,
        *,
        per_seal: int,
        total: int,
        refresh_s: float = 60.0,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.per_seal = per_seal
        self.total = total
        self._refresh_s = refresh_s
        self._on_refused = on_refused
        self._kept: dict[str | None, int] | None = None
        self._read_at = 0.0
        self._since_read = 0

    def refusal(self, session: Session, device_id: str | None, size: int, *, report: bool = True) -> str | None:
        """Count ``size`` bytes kept for ``device_id`` and return None if the budget allows them; else why not
        (passed to ``on_refused`` if ``report``: not for a copy whose row's refusal was reported already)."""
        if size == 0:
            return None
        stale = self._kept is None or time.monotonic() - self._read_at > self._refresh_s
        if stale or self._since_read * 8 > self.total:
            session.flush()  # the rows this transaction added count too
            self._kept = {device: int(kept) for device, kept in session.execute(_KEPT)}
            self._read_at, self._since_read = time.monotonic(), 0
        assert self._kept is not None
        kept = self._kept.get(device_id, 0)
        if kept + size > self.per_seal:
            why, scope = f"the seal account's quarantine holds {kept} bytes, its budget is {self.per_seal}", "seal"
        elif sum(self._kept.values()) + size > self.total:
            why, scope = f"the quarantine holds {sum(self._kept.values())} bytes, its budget is {self.total}", "total"
        else:
            self._kept[device_id] = kept + size
            self._since_read += size
            self._watch(session)
            return None
        if self._on_refused is not None and report:
            self._on_refused(scope)
        return why

    def _watch(self, session: Session) -> None:
        """Forget the counts if ``session``'s transaction ends without its commit (a batch that failed is stored again
        one by one: its bytes would be counted twice): they are read from the database at the next use."""
        session.info[_COUNTED] = True
        if not session.info.get(_WATCHED):
            session.info[_WATCHED] = True
            event.listen(session, "after_commit", _counts_stand)
            event.listen(session, "after_transaction_end", self._ended)

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None and session.info.pop(_COUNTED, False):
            self._kept = None


def _counts_stand(session: Session) -> None:
    session.info.pop(_COUNTED, None)


@dataclass(slots=True)
class _Copies:
    message: Message  # the first copy
    result: IngestResult
    count: int
    last_received_at: datetime


class QuarantineCopies:
    """The refused messages of one batch, counted per key, written by :meth:`write`."""

    def __init__(self, budget: QuarantineBudget | None = None, rows: RefusalBudget | None = None) -> None:
        self._copies: dict[Key, _Copies] = {}
        self._budget = budget
        self._rows = rows  # each account's rows per window: past it, only counted (:mod:`.refusal_count`)

    def add(self, message: Message, result: IngestResult) -> None:
        key = _key(message, result)
        known = self._copies.get(key)
        if known is None:
            self._copies[key] = _Copies(message, result, 1, message.received_at)
        else:
            known.count += 1
            known.last_received_at = max(known.last_received_at, message.received_at)

    def write(
        self,
        session: Session,
        messages: Sequence[Message],
        results: list[IngestResult],
        alarms: AlarmBook | None = None,
    ) -> None:
        """Write the copies; mark the quarantined among ``results`` (of ``messages``) whose bytes a row keeps, and
        those only counted (past their account's rows, raising its alarm in ``alarms``)."""
        counted = self._count_past_budget(session, messages, results, alarms) if self._rows is not None else set()
        kept: set[Key] = set()
        for key in sorted(self._copies):
            copies = self._copies[key]
            if add_copies(
                session,
                copies.message,
                copies.result,
                count=copies.count,
                last=copies.last_received_at,
                budget=self._budget,
            ):
                kept.add(key)
        if not kept and not counted:
            return
        for place, (message, result) in enumerate(zip(messages, results, strict=True)):
            if result.outcome is Outcome.QUARANTINED:
                if (key := _key(message, result)) in kept:
                    results[place] = replace(result, bytes_kept=True)
                elif key in counted:
                    results[place] = replace(result, counted_only=True)

    def _count_past_budget(
        self, session: Session, messages: Sequence[Message], results: list[IngestResult], alarms: AlarmBook | None
    ) -> set[Key]:
        """Take out of the copies those past their account's rows in their window, counted instead; their keys."""
        rows = self._rows
        assert rows is not None
        by_window: dict[Window, list[Key]] = {}  # in the order they came
        for key, copies in self._copies.items():
            if copies.result.reason not in SIGNED_REASONS:
                window = (copies.result.device_id or "", rows.window_of(copies.message.received_at))
                by_window.setdefault(window, []).append(key)
        over: set[Key] = set()
        for (account, start), keys in by_window.items():
            room = rows.room(session, account, start)
            rows.took(session, account, start, min(room, len(keys)))
            over.update(keys[room:])
        if not over:
            return over
        counts: dict[tuple[str, str, datetime], Counted] = {}
        for message, result in zip(messages, results, strict=True):
            if result.outcome is Outcome.QUARANTINED and (key := _key(message, result)) in over:
                account, at, size = result.device_id or "", message.received_at, len(message.payload)
                counting = (account, key[2], rows.window_of(at))
                if (known := counts.get(counting)) is None:
                    counts[counting] = Counted(1, size, at, at)
                else:
                    known.add(size, at)
        write_counts(session, counts)
        if alarms is not None:
            for account, start in sorted({(a, w) for a, _, w in counts}):
                reasons = {r: c.count for (a, r, w), c in counts.items() if (a, w) == (account, start)}
                raise_flood_alarm(alarms, rows, account, start, reasons, at=max(c.last for c in counts.values()))
        for key in over:
            del self._copies[key]
        return over


def add_copies(
    session: Session,
    message: Message,
    result: IngestResult,
    *,
    count: int = 1,
    last: datetime | None = None,
    detail: str | None = None,
    keep_raw: bool = True,
    budget: QuarantineBudget | None = None,
) -> bool:
    """Count ``count`` copies of ``message`` (the last received at ``last``) on its quarantine row, made if there is
    none; ``result`` says why it is refused. ``detail`` applies to a new row only. With ``keep_raw``, a new row keeps
    the bytes only if ``budget`` allows them, and a row without all of them (refused by the budget before) is filled
    in if ``budget`` allows them now. Whether the row keeps all of the message's bytes."""
    sha256, topic, reason = _key(message, result)
    last = last or message.received_at
    if session.get_bind().dialect.name == "postgresql":
        lock = int.from_bytes(bytes.fromhex(sha256[:8]), "big", signed=True)
        session.execute(_LOCK, {"class_key": QUARANTINE_LOCK_CLASS, "key": lock})
    values = {"b_sha256": sha256, "b_reason": reason, "b_topic": topic, "b_copies": count, "b_at": last}
    if cast(CursorResult[Any], session.execute(_COUNT_COPIES, values)).rowcount:
        same = {"b_sha256": sha256, "b_reason": reason, "b_topic": topic}
        if session.execute(_HOLDS, same).first() is not None:
            return True
        return keep_raw and budget is not None and _fill(session, message, result, same, last, budget)
    if keep_raw and budget is not None:
        size = min(len(message.payload), QUARANTINE_RAW_LIMIT)
        refusal = budget.refusal(session, result.device_id, size)
        if refusal is not None:
            keep_raw = False
            logger.warning(
                "quarantined %s from %r (%d bytes, sha256 %s) without its bytes: %s",
                reason,
                topic,
                len(message.payload),
                sha256,
                refusal,
            )
            said = result.detail if detail is None else detail
            detail = f"{said[:1000]} (its bytes were not kept: {refusal})"
    row = quarantine_row(message, result, detail=detail, keep_raw=keep_raw)
    row.copies = count
    row.last_received_at = last if count > 1 else None
    session.add(row)
    return keep_raw and len(message.payload) <= QUARANTINE_RAW_LIMIT


def _fill(
    session: Session,
    message: Message,
    result: IngestResult,
    same: dict[str, str],
    last: datetime,
    budget: QuarantineBudget,
) -> bool:
    """Fill the bytes of ``message`` into its row of the key ``same``, which does not keep them, if they fit the row
    and ``budget`` allows them now; whether it did."""
    size = len(message.payload)
    if size > QUARANTINE_RAW_LIMIT or budget.refusal(session, result.device_id, size, report=False) is not None:
        return False
    note = f" (its bytes were kept later, from a copy received at {last.isoformat()})"
    session.execute(
        _FILL, {**same, "b_raw": message.payload, "b_note": note, "b_detail_kept": QUARANTINE_DETAIL_LIMIT - len(note)}
    )
    logger.info(
        "the quarantine row of %s from %r (sha256 %s) now keeps its bytes",
        same["b_reason"],
        same["b_topic"],
        same["b_sha256"],
    )
    return True


def quarantine_row(
    message: Message, result: IngestResult, *, detail: str | None = None, keep_raw: bool = True
) -> QuarantinedMessage:
    """The quarantine row of one copy of ``message`` (whose ``result`` says why); texts are made storable."""
    assert result.reason is not None
    return QuarantinedMessage(
        received_at=message.received_at,
        topic=stored_topic(message.topic),
        device_id=result.device_id,
        reason=result.reason.value,
        detail=storable_text(result.detail if detail is None else detail, QUARANTINE_DETAIL_LIMIT),
        size=len(message.payload),
        raw=message.payload[:QUARANTINE_RAW_LIMIT] if keep_raw else b"",
        sha256=hashlib.sha256(message.payload).hexdigest(),
        copies=1,
    )


def _key(message: Message, result: IngestResult) -> Key:
    assert result.reason is not None
    sha256 = hashlib.sha256(message.payload).hexdigest()
    return sha256, stored_topic(message.topic), result.reason.value


def stored_topic(topic: str) -> str:
    """``topic`` as its quarantine row keeps it (and the log names it): as it is, made storable, if it fits
    :data:`QUARANTINE_TOPIC_LIMIT`; else its start and the SHA-256 of the whole, so that two long topics that begin
    alike stay two rows, each naming its own topic (a seal's account may publish a topic of 64 KiB)."""
    safe = storable(topic)
    if len(safe) <= QUARANTINE_TOPIC_LIMIT:
        return safe
    digest = hashlib.sha256(safe.encode("utf-8")).hexdigest()
    suffix = f"… ({len(safe)} characters, sha256 {digest})"
    return safe[: QUARANTINE_TOPIC_LIMIT - len(suffix)] + suffix
