"""The ``storage_failed`` alarm: a seal said, in its retained ``online`` status, that it cannot store events.

A seal whose card went read-only (or fails with I/O errors, or is full) still warns, but holds what happens in
memory only: lost at the next power cut. Its heartbeats and command answers cannot be committed, so the liveness
check raises ``offline`` (``silent``) only after ``offline_after_s``; the seal's status says why at once
(docs/protocol.md, "Status": ``storage``). So the court raises a condition alarm as soon as a standing ``online``
carries a storage report, updates its details (the events held, since when) as the seal sends the report again,
and closes it when a standing ``online`` comes without one (the seal says it stores again).

A status is not signed: the alarm and the page call it the seal's status report, never evidence. Raising on an
unsigned report is the ``offline`` alarm's rule too (a Last Will raises it); closing on one is safe here because it
hides no silence: a seal that still cannot store sends no heartbeat, and the liveness check pages it anyway — its
``offline`` alarm then carries the report the seal last sent (:func:`storage_details`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from seal_protocol import utc_now_ms
from seal_protocol.status import StorageReport
from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind


def report_details(report: StorageReport) -> dict[str, Any]:
    """What an alarm says of a storage report: why, how many events held in memory, since (the seal's clock), and
    that it is the seal's unsigned status report."""
    return {"storage": report.reason.value, "held": report.held, "since": report.since, "source": "status_report"}


def storage_details(fault: str | None, held: int | None, since: datetime | None) -> dict[str, Any]:
    """The storage report stored on a seal's row, for its ``offline`` alarm's details (empty: none)."""
    if fault is None:
        return {}
    stamp = utc_now_ms(since) if since is not None else None
    return {"storage": {"storage": fault, "held": held, "since": stamp, "source": "status_report"}}


def on_storage(
    book: AlarmBook, device_id: str, report: StorageReport | None, *, case_no: str | None, at: datetime
) -> None:
    """A standing ``online`` status of the seal: ``report`` raises (or updates) ``storage_failed``, none closes it.
    An unbound seal (in storage) raises nothing."""
    kind = AlarmKind.STORAGE_FAILED
    live = book.live(device_id, kind)
    if report is None:
        if live:
            book.close(kind, device_id=device_id, at=at, note="the seal's status report says it stores events again")
        return
    details = report_details(report)
    if live:
        book.update(kind, device_id=device_id, details=details)  # the same condition: no new occurrence
    elif case_no is not None:
        book.raise_alarm(kind, device_id=device_id, case_no=case_no, at=at, details=details)
