"""What ``alarms.jsonl``'s lines may say beyond their shape (the ``records`` check, :mod:`seal_verify.records`): an
alarm's ``kind``, ``severity`` and ``state`` are ones the court's server has (``server/alarms/state.py``; seal-verify
needs no server, so they are listed here, and a test holds the lists to the server's), and the court's marks in its
``details`` — the event it was raised from, the delayed report or the time in doubt, the simulated seal, the ended
binding, the disarmed seal (docs/evidence.md, "Alarms") — are of their type where present, and so is a
``case_mismatch`` alarm's record of the intrusions among the refused events. Other keys of ``details`` are the
seal's payload or the alarm's own facts, of no fixed form."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from seal_verify.event_checks import moment
from seal_verify.verdict import shown

#: Every alarm kind the server raises (``server.alarms.state.AlarmKind``).
ALARM_KINDS = frozenset(
    {
        "intrusion",
        "tamper",
        "camera_blind",
        "camera_lost",
        "offline",
        "missing_events",
        "outbox_full",
        "speaker_failed",
        "event_lost",
        "arm_failed",
        "disarm_failed",
        "snapshot_lost",
        "clock_unsynced",
        "case_mismatch",
        "refusal_flood",
        "sensor_flapping",
        "sensor_stuck",
        "storage_failed",
    }
)
#: ``server.alarms.state.Severity`` and ``AlarmState``.
SEVERITIES = frozenset({"medium", "high", "critical"})
STATES = frozenset({"open", "acknowledged", "closed"})


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: The court's marks in an alarm's details (``server/alarms/event_details.py``, ``server/ingest/alarming.py``):
#: what each must be where present, in words for the problem.
MARKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "event_type": (lambda v: isinstance(v, str), "a string"),
    "seq": (_count, "a count"),
    "ts": (lambda v: isinstance(v, str) and moment(v) is not None, "a time"),
    "received_at": (lambda v: isinstance(v, str) and moment(v) is not None, "a time"),
    "delayed_s": (_count, "a count of seconds"),
    "clock_gap_s": (lambda v: isinstance(v, int) and not isinstance(v, bool), "a whole number of seconds"),
    "clock_synced": (lambda v: v is None or isinstance(v, bool), "true, false or null"),
    "simulated": (lambda v: isinstance(v, bool), "true or false"),
    "late": (lambda v: isinstance(v, bool), "true or false"),
    "disarmed_while_sealed": (lambda v: isinstance(v, bool), "true or false"),
}
#: The key of a folded alarm's opening report: an object of the report's marks only.
OPENING = "opening"
_REPORT_MARKS = frozenset({"event_type", "seq", "ts", "received_at", "delayed_s", "clock_gap_s", "clock_synced"})


#: A ``case_mismatch`` alarm's ``intrusions`` (``server/ingest/case_mismatch.py``): how many intrusions and tampers
#: were among the refused events, their latest seqs, and ``last``, the last one's details (``event_details``: what
#: it was and claimed, and the marks of its report).
INTRUSIONS = "intrusions"
_INTRUSIONS_KEYS = frozenset({"count", "seqs", "last"})
_LAST_NAMED = frozenset({"event_type", "seq", "ts", "claimed_case_no"})
_LAST_KEYS = _LAST_NAMED | _REPORT_MARKS | {"simulated"}


def alarm_problems(alarm: Mapping[str, Any]) -> list[str]:
    """What is wrong with an alarm line of the right shape: an unknown kind, severity or state, a mark of the wrong
    type in its details (or their ``opening``)."""
    problems = [
        f"{key} {shown(alarm[key])} is none the court's server has"
        for key, known in (("kind", ALARM_KINDS), ("severity", SEVERITIES), ("state", STATES))
        if alarm[key] not in known
    ]
    details: Mapping[str, Any] = alarm["details"]
    problems += _mark_problems(details, "details")
    if OPENING in details:
        opening = details[OPENING]
        if not isinstance(opening, dict) or not set(opening) <= _REPORT_MARKS:
            problems.append(f"details.{OPENING} is {shown(opening)}, not an object of the report's marks")
        else:
            problems += _mark_problems(opening, f"details.{OPENING}")
    if alarm["kind"] == "case_mismatch" and INTRUSIONS in details:
        problems += _intrusions_problems(details[INTRUSIONS], f"details.{INTRUSIONS}")
    return problems


def _intrusions_problems(intrusions: Any, where: str) -> list[str]:
    """What in a ``case_mismatch`` alarm's ``intrusions`` is not of the form the court writes."""
    if not isinstance(intrusions, dict) or set(intrusions) != _INTRUSIONS_KEYS:
        return [f"{where} is {shown(intrusions)}, not an object of count, seqs and last"]
    problems = []
    if not _count(intrusions["count"]):
        problems.append(f"{where}.count is {shown(intrusions['count'])}, not a count")
    seqs = intrusions["seqs"]
    if not isinstance(seqs, list) or not all(_count(seq) for seq in seqs):
        problems.append(f"{where}.seqs is {shown(seqs)}, not a list of counts")
    last = intrusions["last"]
    if not isinstance(last, dict) or not _LAST_NAMED <= set(last) <= _LAST_KEYS:
        problems.append(
            f"{where}.last is {shown(last)}, not an event's details (event_type, seq, ts, claimed_case_no and the "
            "marks of its report)"
        )
    else:
        if not isinstance(last["claimed_case_no"], str):
            problems.append(f"{where}.last.claimed_case_no is {shown(last['claimed_case_no'])}, not a string")
        problems += _mark_problems(last, f"{where}.last")
    return problems


def _mark_problems(details: Mapping[str, Any], where: str) -> list[str]:
    return [
        f"{where}.{key} is {shown(details[key])}, not {words}"
        for key, (holds, words) in MARKS.items()
        if key in details and not holds(details[key])
    ]
