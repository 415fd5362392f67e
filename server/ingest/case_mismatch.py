"""The ``case_mismatch`` alarm: a seal whose own signed events name another case than the one it is bound to.

A seal's configuration names its case (``agent.toml``'s ``case_no``). Mistyped (``1243`` for ``1234``, a number
without its parentheses), or left unchanged after a clerk moved the seal to another case, it makes every event the
seal signs — intrusions included — refused as ``wrong_case`` and never receipted: the seal keeps sending them, and
no case log holds them. So an event refused as ``wrong_case`` raises this alarm in the case the seal is bound to now
(:func:`on_refused`) — only once the refusal is the seal's own word and final for this copy:

- after the signature verified against the seal's enrolled key (:mod:`.checks`: an unsigned or forged message on the
  seal's topic is ``bad_signature`` before its case is looked at);
- after the binding's time and the stored chain had their say (a moved seal's late event, stamped within its old
  binding or placed by the chain, is stored in its old case: :mod:`.late_chain`);
- not for ``unbound_seal``: a seal in stock has no case to tell;
- not yet for a moved seal's event the chain may still carry into the case it names (its drain cut between batches):
  held back until a stored successor fails to place it, or for at most a day (:mod:`.case_hold`);
- not for an event older than the seal's newest stored one (its chain's ``max_seq``): a refused event is never
  receipted, so a seal reconfigured since (its later events stored) sends its old refused ones again and again, with
  back-off — no news, which reopened the alarm (and notified) at each copy.

It is a condition: one live alarm per seal (and case), every refusal folding into it (``count``), a flood of
thousands of refused events included. Its details say what the last refused event claimed: ``claimed_case_no``,
``event_type``, ``seq``, ``ts``; and, once an intrusion or tamper the seal would have alarmed on was among them,
``intrusions`` — ``count`` (distinct events, by ``seq``: the seal sends an unreceipted event again and again),
``seqs`` (the latest :data:`REMEMBERED_INTRUSIONS`) and ``last`` (its ``event_type``, ``seq``, ``ts`` and
``claimed_case_no``) — kept through the later refusals, so that a heartbeat does not wipe an intrusion from the
judge's sight. A new intrusion or tamper after the alarm was acknowledged closes it and opens a new one (alerted and
notified, as an intrusion's own alarm would be: the acknowledgement covered what was known then).

Any event of the seal stored in its current case closes it (:meth:`~server.ingest.alarming.EventAlarms.on_event`),
if it is newer (``seq``) than the last refused event the alarm names: the seal was reconfigured, or a clerk bound it
to the case it names. An older one — made before the misconfiguration, stored after a refused one by another worker
or later in the same batch — is not the seal's newest word, and leaves it open. A seal unbound or moved away has its
live conditions closed by the unbinding (or the liveness check), this one too. Nothing here reads the database: the
seal's live alarms were loaded with the batch's (:class:`~server.alarms.book.AlarmBook`), and the chain state of
the seal, locked by the batch, serialises the raising per seal on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from seal_protocol import Envelope
from server.alarms.book import AlarmBook
from server.alarms.event_details import ClockWord, event_details
from server.alarms.state import AlarmKind, AlarmState
from server.ingest.alarming import intrusion_kind
from server.ingest.clock_word import clock_word
from server.ingest.results import Reason, Rejected

#: How many seqs of intrusions and tampers a ``case_mismatch`` alarm remembers, to tell a copy sent again from new.
REMEMBERED_INTRUSIONS = 20


def on_refused(book: AlarmBook, envelope: Envelope, refusal: Rejected, *, case_no: str | None, at: datetime) -> None:
    """``envelope``, verified as its seal's, was refused for its case (``refusal``) — finally, after the chain's
    placement — while the seal is bound to ``case_no``: a ``wrong_case`` raises (or folds into) the seal's
    ``case_mismatch`` alarm there. ``unbound_seal`` (``case_no`` None) raises nothing."""
    if refusal.reason is not Reason.WRONG_CASE or case_no is None:
        return
    kind, device_id = AlarmKind.CASE_MISMATCH, envelope.device_id
    live = [alarm for alarm in book.live(device_id, kind) if alarm.case_no == case_no]
    before = live[-1].details.get("intrusions") if live else None
    clock = clock_word(book.session, envelope)
    intrusions, new = _intrusions(before if isinstance(before, dict) else None, envelope, at, clock)
    if new and any(alarm.state == AlarmState.ACKNOWLEDGED.value for alarm in live):
        note = f"a new {envelope.type.value} (seq {envelope.seq}) under case number {envelope.case_no!r}: a new alarm"
        book.close(kind, device_id=device_id, at=at, note=note, case_no=case_no)
        book.session.flush()  # rare; on PostgreSQL the book looks for a live one again, and must find it closed
    details = {"claimed_case_no": envelope.case_no, **event_details(envelope, at, clock)}
    if intrusions is not None:
        details["intrusions"] = intrusions
    book.raise_alarm(kind, device_id=device_id, case_no=case_no, at=at, details=details)


def _intrusions(
    before: dict[str, Any] | None, envelope: Envelope, at: datetime, clock: ClockWord
) -> tuple[dict[str, Any] | None, bool]:
    """The ``intrusions`` record after ``envelope`` (``before``: the live alarm's), and whether it is a new one."""
    if intrusion_kind(envelope) is None:
        return before, False
    seqs = [s for s in (before or {}).get("seqs", []) if isinstance(s, int)]
    if envelope.seq in seqs or (len(seqs) >= REMEMBERED_INTRUSIONS and envelope.seq < min(seqs)):
        return before, False  # a copy sent again (never receipted), or older than those remembered
    count = (before or {}).get("count")
    last = event_details(envelope, at, clock, claimed_case_no=envelope.case_no)
    return {
        "count": (count if isinstance(count, int) else len(seqs)) + 1,
        "seqs": sorted([*seqs, envelope.seq])[-REMEMBERED_INTRUSIONS:],
        "last": last,
    }, True
