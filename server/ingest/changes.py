"""What a committed ingest batch changes on the pages: the :class:`~server.core.live.Change`\\ s the live bus (and
the court's live feed) is told, one per seal, case and kind, however many events the batch held."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from server.commands.service import DECIDING_ANSWERS
from server.core.live import Change
from server.ingest.results import IngestResult, Outcome

#: What each committed ingest outcome changes on the pages (duplicates, refusals and cleared statuses change nothing).
_CHANGES = {Outcome.STORED: "event", Outcome.STATUS: "status", Outcome.SNAPSHOT: "snapshot"}


def live_changes(results: Sequence[IngestResult], alarms: Collection[tuple[str, str]] = ()) -> list[Change]:
    """The pages' changes of a committed ingest batch: one per seal, case and kind. An event's change names the case
    it was stored under, so that only that case's pages look at it (a seal moved to another case tells its former
    case's pages nothing, not even when it spoke). A seal's answer that acknowledged or rejected its command changes
    that command too (``command``: what wakes the removal settler of a process that hears it on the live feed,
    :mod:`server.app`). ``alarms``: the (device_id, case_no) of every alarm the batch opened, folded into, updated or
    closed (:attr:`server.alarms.book.AlarmBook.touched`), each an ``alarm`` change of that case — whatever the
    outcome of the message that caused it (an event refused as ``wrong_case`` raises ``case_mismatch`` in the seal's
    bound case; a flood of refusals, ``refusal_flood``)."""
    seen = {
        (_CHANGES[r.outcome], r.device_id, r.case_no)
        for r in results
        if r.outcome in _CHANGES and r.device_id is not None
    }
    seen |= {
        ("command", r.device_id, r.case_no)
        for r in results
        if r.command_answer in DECIDING_ANSWERS and r.device_id is not None
    }
    seen |= {("alarm", device_id, case_no) for device_id, case_no in alarms}
    return [Change(what, device_id, case_no) for what, device_id, case_no in sorted(seen, key=str)]
