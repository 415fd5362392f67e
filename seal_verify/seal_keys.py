"""The ``seal_keys`` check: each event verified with its seal's key *then*, and the seals' key histories agree with
the registrations the log holds (``docs/evidence.md``).

``event_signatures`` accepts an event that verifies with any key of its seal's record (the one enrolled now, or one
of its ``enrolment``), so that a seal's older events stay verifiable. But the court's ingest takes an event only
under the key the seal holds when it arrives, and it never replaces the key of a seal whose chain has begun: in a
bundle the court exported, every event verifies with the key of the seal's latest registration at or before the
event's ``received_at``. One that verifies only with a key replaced before then, or with one registered after it, is
a **warning** — its signature is genuine, but a retired key (perhaps leaked since) made it, or the record of the
seal's keys is not the court's. A ``seal.register`` entry of ``audit.jsonl`` (a leaf of the log, with its
inclusion proof) whose seal, time and key ``seals/<device_id>.json``'s ``enrolment`` does not list **fails**: the
exporter lists every registration of the seal, so such a record was altered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from seal_protocol import utc_now_ms
from seal_verify.bundle import load_object, split_lines
from seal_verify.event_checks import EventLine, moment, normalise_case_no
from seal_verify.streamed import StreamedMember
from seal_verify.verdict import Check, cut, shown

REGISTER = "seal.register"


@dataclass(frozen=True)
class Registration:
    """A registration of the seal's record: when, which key, in which case (``None``: another or none)."""

    at: datetime
    public_key: str
    case_no: str | None


def registrations(record: dict[str, Any]) -> list[Registration]:
    """The seal's ``enrolment`` entries that name a time and a key, oldest first (``records`` fails the others)."""
    enrolment = record.get("enrolment")
    found = []
    for entry in enrolment if isinstance(enrolment, list) else []:
        at = moment(entry.get("at")) if isinstance(entry, dict) else None
        key, case_no = (entry.get("public_key"), entry.get("case_no")) if isinstance(entry, dict) else (None, None)
        if at is not None and isinstance(key, str):
            found.append(Registration(at, key, case_no if isinstance(case_no, str) else None))
    return sorted(found, key=lambda r: r.at)


def key_then(record: dict[str, Any], when: datetime) -> Registration | None:
    """The seal's registration in force at ``when``: its latest at or before it, or its first if none is so early
    (the server's clock set back since: no earlier key exists to be retired). A record without registrations (a
    court older than the enrolment record) has its key in force always; ``None`` if it has none."""
    history = registrations(record)
    if not history:
        key = record.get("public_key")
        return Registration(when, key, None) if isinstance(key, str) else None
    earlier = [r for r in history if r.at <= when]
    return earlier[-1] if earlier else history[0]


def check_event_keys(
    check: Check,
    events: Iterable[EventLine],
    seals: dict[str, dict[str, Any]],
    signed_with: dict[int, str],
    received: dict[int, datetime],
) -> int:
    """A warning for each event (``signed_with``: the key text that verified it, by line number) whose key was not
    its seal's when the court received it (``received``; its ``ts`` where unknown). Returns how many."""
    stale = 0
    for line in events:
        env, key = line.envelope, signed_with.get(line.number)
        if env is None or key is None:
            continue
        when = received.get(line.number, env.occurred_at)
        then = key_then(seals.get(env.device_id, {}), when)
        if then is not None and then.public_key == key:
            continue
        stale += 1
        check.warn(_stale_warning(line, key, when, then, seals.get(env.device_id, {})))
    return stale


def _stale_warning(line: EventLine, key: str, when: datetime, then: Registration | None, record: dict[str, Any]) -> str:
    env = line.envelope
    assert env is not None
    event = f"line {line.number} ({cut(env.device_id)}#{env.seq})"
    at = utc_now_ms(when)
    own = [r for r in registrations(record) if r.public_key == key]
    if then is None:
        zh_why, why = "封条记录中没有公钥", "the seal's record has no key"
    elif own and own[-1].at < then.at:
        zh_why, why = f"该公钥已于 {utc_now_ms(then.at)} 被替换", f"that key was replaced at {utc_now_ms(then.at)}"
    else:
        zh_why, why = "该公钥当时未登记", "that key was not registered then"
    return (
        f"事件 {event} 只能用一个在法院接收时（{at}）并非该封条公钥的密钥验证（{zh_why}）：签名本身有效，但所用为"
        f"旧密钥或记录不符 / event {event} verifies only with a key that was not its seal's key when the court "
        f"received it ({at}; {why}): the signature is genuine, but made with a retired key, or the seal's key record "
        "is not the court's"
    )


def check_registrations(
    check: Check, audit: StreamedMember | None, seals: dict[str, dict[str, Any]], case_no: Any
) -> int:
    """Each ``seal.register`` entry of ``audit.jsonl`` in the bundle's case (``case_no``) is listed in its seal's
    ``enrolment`` (same time, same key); the lines that are no audit entry of the case are ``audit``'s to fail.
    Returns how many registrations were compared."""
    try:
        lines = split_lines(audit or b"", "audit.jsonl")
    except ValueError:  # audit's to fail
        return 0
    compared = 0
    for n, raw in enumerate(lines, start=1):
        try:
            entry = load_object(raw, f"audit.jsonl line {n}")
        except ValueError:
            continue
        named = entry.get("case_no")
        if entry.get("action") != REGISTER or not isinstance(named, str) or not isinstance(case_no, str):
            continue
        if normalise_case_no(named) != normalise_case_no(case_no):
            continue
        compared += 1
        device_id, details = entry.get("target"), entry.get("details")
        key = details.get("public_key") if isinstance(details, dict) else None
        at = moment(entry.get("at"))
        record = seals.get(device_id) if isinstance(device_id, str) else None
        if record is None:
            check.fail(f"audit.jsonl line {n} registers seal {shown(device_id)}, which has no seals/ record")
        elif at is None or not any(r.at == at and r.public_key == key for r in registrations(record)):
            seal, when = cut(str(device_id)), shown(entry.get("at"))
            check.fail(
                f"audit.jsonl line {n} registers seal {seal} with key {shown(key)} at {when}, which "
                f"seals/{seal}.json does not list in its enrolment / 审计记录中的封条登记与封条记录不符"
            )
    return compared
