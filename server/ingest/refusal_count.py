"""Each seal account's budget of quarantine rows per window, and the counters past it.

A seal's MQTT password alone (on its SD card, at the debtor's premises) can publish distinct garbage without end: a
message signed with another key, invalid JSON, a snapshot that is no JPEG. Each such refusal cost a quarantine row (an
update looking for its copies, an insert, its bytes), a log line and its share of the transaction — about 1.4 ms on
SQLite, so that one account flooding at 1,750 messages a second held every other seal's events behind it (measured:
docs/reliability.md, "One seal's flood"). So each account (the device id a topic ``seal/v1/<device_id>/…`` is under,
even if the rest of it does not parse: :func:`~server.ingest.results.account_of`; one account, ``""``, for topics under
none, which only the court's own account can publish) may add at most ``[ingest] quarantine_seal_rows`` rows per window
of ``quarantine_window_s`` (aligned on the epoch). Past it a refused message of that account is only counted: one
``quarantine_counts`` row per (account, reason, window) is added to per batch (an upsert), the metric
``seal_quarantine_counted_only_total{reason}`` counts it, the ingest logs one line per account a minute
(:class:`CountedLog`), and the seal's ``refusal_flood`` alarm is raised (once per account and window in this process;
a condition, so repeats fold into the live one). It is acknowledged, not receipted (its ``bytes_kept`` is False): a
genuine message so refused stays on its seal, which sends it again. Nothing is dropped silently: ``seal-server
quarantine list`` and ``GET /api/quarantine/counts`` show the counts ("N more refused, bytes not kept").

Only refusals a password alone can cause count against the budget. Those decided after the seal's signature was
verified (:data:`SIGNED_REASONS`: ``wrong_case``, ``unbound_seal``, a broken chain, …) are the seal's own word, and
the chain's placement reads their rows (:mod:`.late_chain`): they always get a row. A valid signed event of the
flooding account is verified and stored as ever: only refusals are counted.

The rows an account added in a window are counted from the database at the first use and every ``refresh_s`` (other
workers add rows too), then here; with W workers an account may pass the budget by W batches at most.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, case, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind
from server.ingest.models import QuarantineCount, QuarantinedMessage
from server.ingest.results import Reason
from server.seals.models import Seal

logger = logging.getLogger(__name__)

#: Refusals decided after the seal's signature was verified (or the court's own failures): never counted only.
SIGNED_REASONS = frozenset(
    {
        Reason.UNBOUND_SEAL,
        Reason.WRONG_CASE,
        Reason.REPLAYED_SEQ,
        Reason.DUPLICATE_EVENT_ID,
        Reason.BROKEN_CHAIN,
        Reason.STORAGE_ERROR,
        Reason.INTERNAL_ERROR,
    }
)
#: How often the ingest logs, per account, the refusals it counted only.
LOG_EVERY_S = 60.0

_COUNTS = cast(Table, QuarantineCount.__table__)
_C = _COUNTS.c
_Q = cast(Table, QuarantinedMessage.__table__).c
_ROWS_SINCE = select(func.count(_Q.id))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WATCHED, _TOOK = "refusal_rows_watched", "refusal_rows_taken"  # keys of ``Session.info``

Window = tuple[str, datetime]  # (account: device_id, "" for none: results.account_of; the window's start)


@dataclass(slots=True)
class Counted:
    """Refused messages of one (account, reason, window) counted in one batch."""

    count: int
    size: int
    first: datetime
    last: datetime

    def add(self, size: int, at: datetime) -> None:
        self.count += 1
        self.size += size
        self.first, self.last = min(self.first, at), max(self.last, at)


class RefusalBudget:
    """How many quarantine rows each seal account may add per window (``per_window``, ``window_s``). One per
    ingestor; used by one batch at a time."""

    def __init__(self, *, per_window: int, window_s: int, refresh_s: float = 60.0) -> None:
        self.per_window = per_window
        self.window = timedelta(seconds=window_s)
        self._refresh_s = refresh_s
        self._rows: dict[Window, tuple[int, float]] = {}  # -> (rows added, when read from the database)
        self._alarmed: set[Window] = set()

    def window_of(self, at: datetime) -> datetime:
        return _EPOCH + ((at - _EPOCH) // self.window) * self.window

    def room(self, session: Session, account: str, start: datetime) -> int:
        """How many more rows ``account`` may add in the window beginning at ``start``."""
        known = self._rows.get((account, start))
        if known is None or time.monotonic() - known[1] > self._refresh_s:
            session.flush()  # this transaction's rows count too
            device = _Q.device_id.is_(None) if account == "" else _Q.device_id == account
            when = and_(_Q.received_at >= start, _Q.received_at < start + self.window)
            rows = int(session.execute(_ROWS_SINCE.where(device, when)).scalar_one())
            self._rows = {k: v for k, v in self._rows.items() if k[1] >= start}  # older windows are done
            known = self._rows[(account, start)] = (rows, time.monotonic())
        return max(0, self.per_window - known[0])

    def took(self, session: Session, account: str, start: datetime, rows: int) -> None:
        """``rows`` more rows of ``account`` in the window at ``start`` (forgotten if the transaction fails)."""
        if rows:
            added, read_at = self._rows.get((account, start), (0, time.monotonic()))
            self._rows[(account, start)] = (added + rows, read_at)
            self._watch(session)

    def first_flood(self, session: Session, account: str, start: datetime) -> bool:
        """True the first time this process counts only for ``account`` in the window at ``start`` (again if the
        transaction that raised its alarm fails)."""
        if (account, start) in self._alarmed:
            return False
        self._alarmed = {k for k in self._alarmed if k[1] >= start} | {(account, start)}
        self._watch(session)
        return True

    def _watch(self, session: Session) -> None:
        session.info[_TOOK] = True
        if not session.info.get(_WATCHED):
            session.info[_WATCHED] = True
            event.listen(session, "after_commit", _counts_stand)
            event.listen(session, "after_transaction_end", self._ended)

    def _ended(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None and session.info.pop(_TOOK, False):
            self._rows.clear()  # read again from the database at the next use
            self._alarmed.clear()  # an alarm raised in it is not raised: raised again (folded if it stands)


def _counts_stand(session: Session) -> None:
    session.info.pop(_TOOK, None)


def write_counts(session: Session, counts: dict[tuple[str, str, datetime], Counted]) -> None:
    """Add ``counts`` ((account, reason, window start) -> what was counted) to their rows, made if there are none;
    in key order (the lock order of concurrent workers)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for (account, reason, start), counted in sorted(counts.items()):
        statement = insert(_COUNTS).values(
            device_id=account,
            reason=reason,
            window_start=start,
            count=counted.count,
            bytes=counted.size,
            first_received_at=counted.first,
            last_received_at=counted.last,
        )
        new = statement.excluded
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[_C.device_id, _C.reason, _C.window_start],
                set_={
                    "count": _C.count + new.count,
                    "bytes": _C.bytes + new.bytes,
                    "first_received_at": case(
                        (new.first_received_at < _C.first_received_at, new.first_received_at),
                        else_=_C.first_received_at,
                    ),
                    "last_received_at": case(
                        (new.last_received_at > _C.last_received_at, new.last_received_at), else_=_C.last_received_at
                    ),
                },
            )
        )


def raise_flood_alarm(
    book: AlarmBook, budget: RefusalBudget, account: str, start: datetime, counted: dict[str, int], *, at: datetime
) -> None:
    """The seal's ``refusal_flood`` alarm (its account past its budget of quarantine rows in the window at
    ``start``; ``counted``: reason -> messages counted only in this batch), in its current case; nothing for an
    account that names no registered seal bound to a case."""
    if account == "" or not budget.first_flood(book.session, account, start):
        return
    case_no = book.session.scalar(select(Seal.case_no).where(Seal.device_id == account))
    if case_no is None:
        return
    details = {
        "window_start": start.isoformat(),
        "window_s": int(budget.window.total_seconds()),
        "rows_per_window": budget.per_window,
        "reasons": dict(sorted(counted.items())),
    }
    book.raise_alarm(AlarmKind.REFUSAL_FLOOD, device_id=account, case_no=case_no, at=at, details=details)
    logger.error(
        "seal %s's MQTT account floods the court with refused messages (%s): past %d quarantine rows since %s, they "
        "are only counted; if the seal is not malfunctioning, its password is in other hands: disable the account "
        "(seal-server seal disable %s) and give the seal a new password (seal-server seal rotate-password)",
        account,
        ", ".join(f"{reason} {n}" for reason, n in sorted(counted.items())),
        budget.per_window,
        start.isoformat(),
        account,
    )


class CountedLog:
    """One log line per account every :data:`LOG_EVERY_S` about its refusals counted only (and the first at once)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since: dict[str, tuple[float, dict[str, int]]] = {}

    def counted(self, account: str | None, reason: Reason) -> None:
        key = account or ""
        now = self._clock()
        logged_at, reasons = self._since.get(key, (float("-inf"), {}))
        reasons[reason.value] = reasons.get(reason.value, 0) + 1
        if now - logged_at < LOG_EVERY_S:
            self._since[key] = (logged_at, reasons)
            return
        self._since[key] = (now, {})
        logger.warning(
            "seal account %r: %s refused and counted only, bytes not kept (its quarantine_seal_rows per window used; "
            "seal-server quarantine list shows the counts)",
            key,
            ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())),
        )
