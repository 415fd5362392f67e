"""What format 3 (``court-seal-evidence/3``) adds to a bundle, checked (``docs/evidence.md``):

* a ``snapshots.jsonl`` line's ``refused``: the copies the court received on the picture's snapshot topic from a
  seal whose event names it and refused (kept in its quarantine). One whose ``sha256`` is the picture's name is the
  picture the seal signed for: the line must say ``refused_by_court`` (unless the court holds it or lost it), and the
  bundle must carry its bytes as ``refused/<sha256>.jpg`` exactly when the court says it kept them whole (``kept``;
  never a copy of more than :data:`QUARANTINE_KEEPS` bytes), hashing to the name — a copy it did not keep is noted
  as lost; one whose ``sha256`` is another was received but is not the picture;
* ``quarantine.jsonl``: the court's summary of what it refused of the case's seals while bound to the case, shown
  as notes. It is the court's word, not the seals' signature: information, never a reason to trust.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from seal_verify.bundle import Bundle, object_lines
from seal_verify.event_checks import moment
from seal_verify.verdict import Check, cut, shown

FORMATS_BEFORE_3 = ("court-seal-evidence/1", "court-seal-evidence/2")
REFUSED_BY_COURT = "refused_by_court"
#: The bytes of a refused message the court's quarantine keeps, at most (a longer one is cut: not the picture).
QUARANTINE_KEEPS = 256 * 1024
REFUSED_KEYS = {"copies", "device_id", "kept", "reason", "received_at", "sha256", "size"}
QUARANTINE_KEYS = {"copies", "device_id", "first_received_at", "last_received_at", "messages", "reason"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _count(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def refused_problem(record: dict[str, Any], sha: str, seals: set[str]) -> str | None:
    """What is wrong in a line's ``refused``: not a list of entries of exactly :data:`REFUSED_KEYS`, each of a seal
    whose event names the picture (``seals``), a text reason, a ts, a count of copies and a size, whether the court
    kept the bytes (never more than :data:`QUARANTINE_KEEPS`), the SHA-256 of what arrived (``null`` for a row older
    than its record); not sorted by ``received_at``, seal, reason and hash."""
    entries = record.get("refused")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        return "refused is not a list of objects"
    for entry in entries:
        if set(entry) != REFUSED_KEYS:
            return f"a refused copy's keys are not {sorted(REFUSED_KEYS)}"
        if not isinstance(entry["device_id"], str) or entry["device_id"] not in seals:
            return f"a refused copy of {shown(entry['device_id'])}, not a seal whose event names the picture"
        hashed = entry["sha256"]
        if not (isinstance(entry["reason"], str) and entry["reason"]) or moment(entry["received_at"]) is None:
            return "a refused copy without a reason or a received_at time"
        if not (_count(entry["copies"], 1) and _count(entry["size"], 0)):
            return "a refused copy's copies or size is not a count"
        if not isinstance(entry["kept"], bool) or (entry["kept"] and entry["size"] > QUARANTINE_KEEPS):
            return f"a refused copy's kept is not true or false, or true of more than {QUARANTINE_KEEPS} bytes"
        if not (hashed is None or (isinstance(hashed, str) and _SHA256.fullmatch(hashed))):
            return f"a refused copy's sha256 {shown(hashed)} is not a SHA-256"
    order = [(e["received_at"], e["device_id"], e["reason"], e["sha256"] or "") for e in entries]
    if order != sorted(order) or len(set(order)) != len(order):
        return "refused is not sorted by received_at, device_id, reason and sha256, or lists a copy twice"
    if sha in (e["sha256"] for e in entries) and len({e["size"] for e in entries if e["sha256"] == sha}) != 1:
        return "the refused copies of the picture's bytes differ in size"
    return None


def refused_copy(record: dict[str, Any], sha: str) -> dict[str, Any] | None:
    """The first refused copy whose bytes are the picture (its ``sha256`` the line's), if any."""
    entries = record.get("refused")
    found = [e for e in entries if isinstance(e, dict) and e.get("sha256") == sha] if isinstance(entries, list) else []
    return found[0] if found else None


def refused_kept(record: dict[str, Any], sha: str) -> bool:
    """Whether the court says it kept whole a refused copy whose bytes are the picture."""
    entries = record.get("refused")
    listed = entries if isinstance(entries, list) else []
    return any(isinstance(e, dict) and e.get("sha256") == sha and e.get("kept") is True for e in listed)


def check_refused_file(check: Check, bundle: Bundle, record: dict[str, Any], sha: str) -> None:
    """A ``refused_by_court`` line's bytes: in the bundle, hashing to the name and of the copy's size, exactly when
    the court says it kept a copy of the picture whole (``kept``); not otherwise."""
    copy = refused_copy(record, sha)
    data = bundle.get(f"refused/{sha}.jpg")
    carried = record.get("absent_reason") == REFUSED_BY_COURT and copy is not None and refused_kept(record, sha)
    if not carried:
        if data is not None:
            check.fail(
                f"refused/{cut(sha)}.jpg is in the bundle, but its line does not say the court refused and kept it"
            )
        return
    assert copy is not None
    if data is None:
        check.fail(f"snapshot {cut(sha)}: refused by the court and kept whole, but refused/{cut(sha)}.jpg is missing")
        return
    if hashlib.sha256(data).hexdigest() != sha or len(data) != copy["size"]:
        check.fail(f"refused/{cut(sha)}.jpg: its bytes do not hash to its name, or are not the refused copy's size")


def check_refused_members(check: Check, bundle: Bundle, listed: set[str]) -> None:
    """Every ``refused/<sha256>.jpg`` belongs to a line of ``snapshots.jsonl`` (``listed``)."""
    for path in sorted(bundle.under("refused/")):
        sha = path.removeprefix("refused/").removesuffix(".jpg")
        if sha not in listed:
            check.fail(f"{path} belongs to no line of snapshots.jsonl")


def refused_note(sha: str, copy: dict[str, Any], carried: bool) -> str:
    if carried:
        held, held_en = "字节附于包内", f"its bytes are refused/{cut(sha)}.jpg"
    elif isinstance(copy["size"], int) and copy["size"] > QUARANTINE_KEEPS:
        held, held_en = "字节过大，法院隔离区未完整保存", "too large: the quarantine did not keep its bytes whole"
    else:
        held, held_en = "法院未保存其字节（已丢失）", "the court did not keep its bytes (they are lost)"
    return (
        f"快照 {cut(sha)} 法院已于 {copy['received_at']} 收到（{copy['size']} 字节），因 {copy['reason']} 拒收并隔离，"
        f"{held} / snapshot {cut(sha)} was received by the court at {copy['received_at']} ({copy['size']} bytes) and "
        f"refused ({copy['reason']}), kept in its quarantine; {held_en}"
    )


def check_quarantine(check: Check, bundle: Bundle, bundle_format: str, seals: set[str]) -> None:
    """``quarantine.jsonl``: absent before format 3; from 3 on, lines of :data:`QUARANTINE_KEYS` of the bundle's
    seals, sorted by seal and reason, each shown as a note (information, not trust)."""
    data = bundle.jsonl("quarantine.jsonl")
    if bundle_format in FORMATS_BEFORE_3:
        if data is not None or bundle.under("refused/"):
            check.fail(f"quarantine.jsonl or refused/ in a bundle of {bundle_format}, which has neither")
        return
    if data is None:
        check.fail("quarantine.jsonl is missing")
        return
    try:
        lines = object_lines(data, "quarantine.jsonl")
    except ValueError as exc:
        check.fail(str(exc))
        return
    order = [(line.get("device_id"), line.get("reason")) for line in lines]
    for line in lines:
        if set(line) != QUARANTINE_KEYS or not isinstance(line["device_id"], str) or line["device_id"] not in seals:
            check.fail(f"quarantine.jsonl: a line whose keys are not {sorted(QUARANTINE_KEYS)} or of no seal listed")
            return
        if not isinstance(line["reason"], str):
            check.fail("quarantine.jsonl: a line whose reason is not text")
            return
        if not (_count(line["messages"], 1) and _count(line["copies"], line["messages"])):
            check.fail("quarantine.jsonl: messages or copies is not a count (copies at least messages)")
            return
        first, last = moment(line["first_received_at"]), moment(line["last_received_at"])
        if first is None or last is None or first > last:
            check.fail("quarantine.jsonl: first_received_at and last_received_at are not times in order")
            return
    if order != sorted(order) or len(set(order)) != len(order):
        check.fail("quarantine.jsonl is not sorted by device_id and reason, or lists one twice")
        return
    for line in lines:
        check.note(quarantine_note(line))


def quarantine_note(line: dict[str, Any]) -> str:
    return (
        f"法院隔离区：封条 {line['device_id']} 的 {line['messages']} 条消息（共 {line['copies']} 份）因 "
        f"{line['reason']} 被拒收，{line['first_received_at']} 至 {line['last_received_at']}，不在事件之列 / "
        f"court quarantine: {line['messages']} messages ({line['copies']} copies) of seal {line['device_id']} "
        f"refused ({line['reason']}) from {line['first_received_at']} to {line['last_received_at']}, not among the "
        "events"
    )
