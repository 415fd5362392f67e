"""The seals' keys and the ends of their bindings, from the audit entries each seal's record carries with their
leaves (``seals/<device_id>.json`` ``logged``), which ``inclusion`` proves are in the log (``docs/evidence.md``).

A seal's key for an event is the key of its last ``seal.register`` logged before the event's leaf; a gap in its
chain is excused only by a ``seal.unbind`` of this case logged between the two events' leaves. The record's
``public_key`` and ``enrolment`` must agree with those entries: they are the database's word, and are not used."""

from __future__ import annotations

from typing import Any

from seal_protocol import SignatureError, canonical_json
from seal_protocol.signing import verify_key_from_b64
from seal_verify.event_checks import SealLog, normalise_case_no
from seal_verify.log_checks import Leaf
from seal_verify.verdict import Check

#: What a seal's logged entries may be: its registrations (any case), its bindings to this case and their ends.
ACTIONS = ("seal.register", "seal.bind", "seal.unbind")
ITEM_KEYS = {"entry", "leaf_index"}


def read_seal_logs(
    check: Check, seals: dict[str, dict[str, Any]], case_no: Any
) -> tuple[dict[str, SealLog], list[Leaf]]:
    """Each seal's keys and unbindings from its logged entries (problems into ``check``; whether its record agrees
    with them too), and the entries as leaves for ``inclusion``. ``case_no``: the bundle's case number."""
    case = normalise_case_no(case_no) if isinstance(case_no, str) else None
    logs, leaves = {}, []
    for device_id, record in sorted(seals.items()):  # the exporter's order, as log/proofs.jsonl lists them
        logs[device_id] = found = SealLog()
        items = record.get("logged")
        if not isinstance(items, list):
            check.fail(f"seals/{device_id}.json 无已记入日志的登记记录 / has no logged entries (logged)")
            continue
        last = -1
        for n, item in enumerate(items, start=1):
            what = f"seals/{device_id}.json logged entry {n}"
            problem = _problem(item, device_id, case, last)
            if problem is not None:
                check.fail(f"{what}: {problem}")
                continue
            entry, index = item["entry"], item["leaf_index"]
            last = index
            leaves.append(Leaf(what, canonical_json(entry), index))
            if entry["action"] == "seal.register":
                found.keys.append((index, entry["details"]["public_key"]))
                found.enrolled.append((entry.get("at"), entry["details"]["public_key"]))
            elif entry["action"] == "seal.unbind":
                found.unbound.append(index)
        _check_record(check, device_id, record, found)
    return logs, leaves


def _problem(item: Any, device_id: str, case: str | None, last: int) -> str | None:
    if not isinstance(item, dict) or set(item) != ITEM_KEYS or not isinstance(item["entry"], dict):
        return f"not an object of exactly {sorted(ITEM_KEYS)} with an entry object"
    entry, index = item["entry"], item["leaf_index"]
    if not isinstance(index, int) or isinstance(index, bool) or index <= last:
        return f"leaf_index {index!r} is not after the previous one's"
    if entry.get("kind") != "audit" or entry.get("target") != device_id or entry.get("action") not in ACTIONS:
        return f"not a {'/'.join(ACTIONS)} audit entry of {device_id}"
    named = entry.get("case_no")
    if entry["action"] != "seal.register" and (not isinstance(named, str) or normalise_case_no(named) != case):
        return f"a {entry['action']} of case {named!r}, not of this case"
    details = entry.get("details")
    if entry["action"] == "seal.register":
        key = details.get("public_key") if isinstance(details, dict) else None
        try:
            verify_key_from_b64(key if isinstance(key, str) else "")
        except SignatureError:
            return "a seal.register without a valid public_key"
    return None


def _check_record(check: Check, device_id: str, record: dict[str, Any], found: SealLog) -> None:
    """The record's ``public_key`` is its last logged registration's key, its ``enrolment`` those registrations."""
    path = f"seals/{device_id}.json"
    if not found.keys:
        check.fail(
            f"{path}: 日志中没有该封条的登记（seal.register），无法确认其公钥 / no logged registration of the seal"
        )
    elif record.get("public_key") != found.keys[-1][1]:
        check.fail(
            f"{path}: public_key 不是日志中最后一次登记的公钥（数据库中的公钥被改动？） / public_key "
            f"{record.get('public_key')!r} is not the key of the seal's last logged registration"
        )
    enrolment = record.get("enrolment")
    listed = [(e.get("at"), e.get("public_key")) if isinstance(e, dict) else e for e in enrolment or []]
    if not isinstance(enrolment, list) or listed != found.enrolled:
        check.fail(f"{path}: enrolment 与日志中的登记记录不符 / enrolment is not the seal's logged registrations")
