"""What the ingest refused of a case's seals while they guarded it (``quarantine.jsonl``, ``docs/evidence.md``).

A refused message never becomes an event, so a bundle of stored events alone is silent about it: a seal re-provisioned
with a new key while the court keeps its old chain has every new event quarantined as ``replayed_seq`` and sent again
for ever, and its case's bundle would verify with nothing to show for it. The summary states, per seal and reason,
how many distinct messages and copies the quarantine holds that arrived while the seal was bound to the case (and,
for a time-ranged export, within the range, by the court's clock: a refused message has no trusted ``ts``), and when
the first and last came. It is the court's record, not signed by the seal: information, not evidence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol import utc_now_ms
from server.ingest.models import QuarantinedMessage
from server.seals.models import SealBinding

JsonDict = dict[str, Any]
Window = tuple[datetime, datetime | None]  # [from, to]; to None: still bound


def quarantine_summary(
    session: Session, case_no: str, device_ids: list[str], start: datetime | None, end: datetime | None
) -> list[JsonDict]:
    """One line per (seal, reason): ``{"copies", "device_id", "first_received_at", "last_received_at", "messages",
    "reason"}``, sorted by seal then reason, of the quarantine rows of ``device_ids`` received while the seal was
    bound to ``case_no`` and within ``[start, end]`` (``None``: open)."""
    windows: dict[str, list[Window]] = {}
    bindings = select(SealBinding).where(SealBinding.case_no == case_no, SealBinding.device_id.in_(device_ids))
    for binding in session.scalars(bindings):
        windows.setdefault(binding.device_id, []).append((binding.bound_at, binding.unbound_at))
    query = select(
        QuarantinedMessage.device_id,
        QuarantinedMessage.reason,
        QuarantinedMessage.received_at,
        QuarantinedMessage.last_received_at,
        QuarantinedMessage.copies,
    ).where(QuarantinedMessage.device_id.in_(list(windows)))
    lines: dict[tuple[str, str], JsonDict] = {}
    for device_id, reason, first, last, copies in session.execute(query):
        last = last or first
        if device_id is None or not any(_overlaps(first, last, w, start, end) for w in windows[device_id]):
            continue
        line = lines.setdefault(
            (device_id, reason),
            {"copies": 0, "device_id": device_id, "first": first, "last": last, "messages": 0, "reason": reason},
        )
        line["copies"] += copies
        line["messages"] += 1
        line["first"], line["last"] = min(line["first"], first), max(line["last"], last)
    return [
        {
            "copies": line["copies"],
            "device_id": line["device_id"],
            "first_received_at": utc_now_ms(line["first"]),
            "last_received_at": utc_now_ms(line["last"]),
            "messages": line["messages"],
            "reason": line["reason"],
        }
        for _, line in sorted(lines.items())
    ]


def _overlaps(first: datetime, last: datetime, window: Window, start: datetime | None, end: datetime | None) -> bool:
    """Whether copies received from ``first`` to ``last`` came while bound (``window``) and within the range."""
    lo = max(window[0], start) if start is not None else window[0]
    his = [moment for moment in (window[1], end) if moment is not None]
    hi = min(his) if his else None
    return last >= lo and (hi is None or first <= hi)
