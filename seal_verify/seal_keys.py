"""The ``seal_keys`` check: each event verified with its seal's key *then*, and the seals' key histories agree with
the registrations the log holds (``docs/evidence.md``).

``event_signatures`` accepts an event that verifies with any key of its seal's ``enrolment`` (its ``public_key``
only where that is empty), so that a seal's older events stay verifiable. But the court's ingest takes an event only
under the key the seal holds when it arrives, and it never replaces the key of a seal whose chain has begun: in a
bundle the court exported, every event verifies with the key of the seal's latest registration at or before the
event's ``received_at``. One that verifies only with a key replaced before then, or with one registered after it, is
a **warning** — its signature is genuine, but a retired key (perhaps leaked since) made it, or the record of the
seal's keys is not the court's. A ``seal.register`` entry of ``audit.jsonl`` (a leaf of the log, with its
inclusion proof) whose seal, time, actor and key ``seals/<device_id>.json``'s ``enrolment`` does not list
**fails**: the exporter lists every registration of the seal, so such a record was altered. So does a
``public_key`` that is not the last registration's key: the report would print a key nothing ties to the seal.

The keys that signed each seal's events, per registration period, are noted and returned (the verdict's
``signing_keys``, the report's table of keys): what a holder compares with the key recorded at installation. A seal
whose events several keys signed is a **warning**: neither the court nor a seal makes such a change.
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
from seal_verify.verdict import Check, KeyUse, cut, shown

REGISTER = "seal.register"


@dataclass(frozen=True)
class Registration:
    """A registration of the seal's record: when, which key, in which case (``None``: another or none), by whom."""

    at: datetime
    public_key: str
    case_no: str | None
    actor: str | None = None


def registrations(record: dict[str, Any]) -> list[Registration]:
    """The seal's ``enrolment`` entries that name a time and a key, oldest first (``records`` fails the others)."""
    enrolment = record.get("enrolment")
    found = []
    for entry in enrolment if isinstance(enrolment, list) else []:
        at = moment(entry.get("at")) if isinstance(entry, dict) else None
        entry = entry if isinstance(entry, dict) else {}
        key, case_no, actor = entry.get("public_key"), entry.get("case_no"), entry.get("actor")
        if at is not None and isinstance(key, str):
            found.append(
                Registration(
                    at, key, case_no if isinstance(case_no, str) else None, actor if isinstance(actor, str) else None
                )
            )
    return sorted(found, key=lambda r: r.at)


def key_then(record: dict[str, Any], when: datetime, history: list[Registration] | None = None) -> Registration | None:
    """The seal's registration in force at ``when``: its latest at or before it, or its first if none is so early
    (the server's clock set back since: no earlier key exists to be retired). A record without registrations (a
    court older than the enrolment record) has its key in force always; ``None`` if it has none. ``history``: the
    record's :func:`registrations`, where the caller has them."""
    history = registrations(record) if history is None else history
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
) -> tuple[int, list[KeyUse]]:
    """A warning for each event (``signed_with``: the key text that verified it, by line number) whose key was not
    its seal's when the court received it (``received``; its ``ts`` where unknown), and for each seal whose events
    several keys signed. Returns how many events were so warned of, and the keys that signed, per seal and period
    (each stated as a note: what a holder compares with the key recorded when the seal was installed)."""
    stale = 0
    histories = {device_id: registrations(record) for device_id, record in seals.items()}
    uses: dict[tuple[str, datetime | None, str], list[int]] = {}  # -> [events, first seq, last seq]
    for line in events:
        env, key = line.envelope, signed_with.get(line.number)
        if env is None or key is None:
            continue
        when = received.get(line.number, env.occurred_at)
        history = histories.get(env.device_id, [])
        then = key_then(seals.get(env.device_id, {}), when, history)
        period = then.at if history and then is not None and then.public_key == key else None
        counts = uses.setdefault((env.device_id, period, key), [0, env.seq, env.seq])
        counts[:] = [counts[0] + 1, min(counts[1], env.seq), max(counts[2], env.seq)]
        if then is not None and then.public_key == key:
            continue
        stale += 1
        check.warn(_stale_warning(line, key, when, then, seals.get(env.device_id, {})))
    found = [KeyUse(d, k, at, *counts) for (d, at, k), counts in uses.items()]
    found.sort(key=lambda u: (u.device_id, u.first_seq, u.public_key))
    for use in found:
        check.note(_signed_note(use))
    _warn_key_changes(check, found)
    return stale, found


def _signed_note(use: KeyUse) -> str:
    seal, seqs = cut(use.device_id), f"seq {use.first_seq}–{use.last_seq}"
    if use.registered_at is None:
        zh_when = "（不在其登记期间，或封条无登记记录）"
        when = " (outside a registration of it, or no enrolment record)"
    else:
        at = utc_now_ms(use.registered_at)
        zh_when, when = f"（{at} 登记）", f", registered at {at}"
    return (
        f"封条 {seal} 的 {use.events} 个事件（{seqs}）由公钥 {use.public_key}{zh_when}签名 / {use.events} event(s) "
        f"of seal {seal} ({seqs}) signed with key {use.public_key}{when}: compare it with the key recorded when the "
        "seal was installed / 请与安装时记录的公钥核对"
    )


def _warn_key_changes(check: Check, found: list[KeyUse]) -> None:
    """A warning for each seal whose events more than one key signed: the court refuses a new key for a seal whose
    events it stores, and a seal never signs a chain it has begun with a new key (docs/reliability.md), so nothing
    the seal signed ties the change to it."""
    keys: dict[str, set[str]] = {}
    for use in found:
        keys.setdefault(use.device_id, set()).add(use.public_key)
    for device_id, held in sorted(keys.items()):
        if len(held) < 2:
            continue
        seal = cut(device_id)
        check.warn(
            f"封条 {seal} 在本包中的事件由 {len(held)} 个不同公钥签名：法院不为已存有事件的封条更换公钥，封条也不会"
            "以新密钥延续已开始的哈希链，本包所示的换钥无法与封条本身关联，请将每个签名公钥与安装时记录的公钥逐一核对 "
            f"/ seal {seal}'s events in this bundle are signed with {len(held)} different keys: the court does not "
            "replace the key of a seal whose events it stores, and a seal never continues a chain it has begun with "
            "a new key, so nothing ties this key change to the seal; compare each key that signed with the one "
            "recorded when the seal was installed"
        )


def check_current_keys(check: Check, seals: dict[str, dict[str, Any]]) -> None:
    """Fails each seal whose ``public_key`` is not the key of its newest registration (the last ``enrolment``
    entry: the exporter lists them in the order the court recorded them), where it has an enrolment history: the
    report prints that key as the seal's, and ``event_signatures`` does not try it — nothing else ties it."""
    for device_id, record in sorted(seals.items()):
        enrolment = record.get("enrolment")
        entries = [e for e in enrolment if isinstance(e, dict)] if isinstance(enrolment, list) else []
        if not entries:
            continue
        key, last = record.get("public_key"), entries[-1]
        if key == last.get("public_key"):
            continue
        seal = cut(device_id)
        check.fail(
            f"seals/{seal}.json 的 public_key {shown(key)} 不是该封条最近一次登记（enrolment 最后一项，"
            f"{shown(last.get('at'))}）的公钥 {shown(last.get('public_key'))}：它未签署任何事件，也与登记记录不符 / "
            f"seals/{seal}.json's public_key {shown(key)} is not the key of the seal's latest registration (the "
            f"last enrolment entry, at {shown(last.get('at'))}): {shown(last.get('public_key'))}; nothing ties it to "
            "the seal"
        )


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
        at, actor = moment(entry.get("at")), entry.get("actor")
        record = seals.get(device_id) if isinstance(device_id, str) else None
        if record is None:
            check.fail(f"audit.jsonl line {n} registers seal {shown(device_id)}, which has no seals/ record")
        elif at is None or not any(
            r.at == at and r.public_key == key and r.actor == actor for r in registrations(record)
        ):
            seal, when = cut(str(device_id)), shown(entry.get("at"))
            check.fail(
                f"audit.jsonl line {n} registers seal {seal} with key {shown(key)} at {when} by {shown(actor)}, "
                f"which seals/{seal}.json does not list in its enrolment / 审计记录中的封条登记与封条记录不符"
            )
    return compared
