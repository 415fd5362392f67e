"""The check of the snapshots the events name: each picture the bundle carries hashes to its name and is listed
``present``; a picture not carried is listed either as never received, or as received by the court and lost since
(its file missing or altered in the court's store): evidence destroyed, which fails (``docs/evidence.md``).

From format 2 on, a line also says why a picture is absent (``absent_reason``) and lists the seal's signed
statements that it could not store it (``not_stored``): both must be what the bundle's signed events and the line's
own fields say, so the bundle tells a picture the seal never had from one lost on the way or withheld. A statement
counts only from the seal whose trigger named the picture (``not_stored_statements``).

From format 3 on, a line also lists the copies the court received on the picture's topic and refused
(``refused``): one that is the picture makes it ``refused_by_court``, with its bytes in the bundle
(:mod:`seal_verify.refused_checks`).

From format 4 on, a line also lists the seal's signed statements that it lost the picture after naming it
(``snapshot_lost``), which make it ``lost_on_seal`` — the seal's word that its copy was gone before the court
receipted it, not proof that the court never received it: again only from the seal whose earlier event named it
(``lost_statements``). A bundle of format 1, 2 or 3 knows no such reason (it lists such a picture ``not_received``,
which verifies as before); in every format the summary counts, and a note states, the pictures the signed events say
the seal lost.

A picture two seals name (two covered lenses: one black frame) may have been delivered by a seal whose event is not
in the bundle (before the range): a line of a picture the court holds may name any seal of the bundle
(``seals/<device_id>.json``); one it does not hold, only a seal whose event names it."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from seal_protocol import Envelope
from seal_verify.bundle import Bundle, object_lines
from seal_verify.event_checks import EventLine, moment
from seal_verify.refused_checks import (
    REFUSED_BY_COURT,
    check_refused_file,
    check_refused_members,
    refused_copy,
    refused_note,
    refused_problem,
)
from seal_verify.verdict import Check, Status, cut, shown

SNAPSHOT_KEYS = {"device_id", "present", "received_at", "sha256", "size"}
#: The keys of a line of format 2 (``court-seal-evidence/2``) and later.
SNAPSHOT_KEYS_2 = SNAPSHOT_KEYS | {"absent_reason", "not_stored"}
#: The keys of a line of format 3 (``court-seal-evidence/3``).
SNAPSHOT_KEYS_3 = SNAPSHOT_KEYS_2 | {"refused"}
#: The keys of a line of format 4 (``court-seal-evidence/4``).
SNAPSHOT_KEYS_4 = SNAPSHOT_KEYS_3 | {"snapshot_lost"}
FORMAT_1, FORMAT_2, FORMAT_3 = "court-seal-evidence/1", "court-seal-evidence/2", "court-seal-evidence/3"
NOT_STORED_BY_SEAL, NOT_RECEIVED, LOST = "not_stored_by_seal", "not_received", "lost"
LOST_ON_SEAL = "lost_on_seal"

#: sha256 -> the seal's signed statements that it could not store the picture, as the bundle lists them.
Statements = dict[str, list[dict[str, Any]]]


def named_snapshots(envelope: Envelope) -> list[str]:
    listed = envelope.payload.get("snapshots")
    names = [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else []
    single = envelope.payload.get("snapshot")
    return [*names, single] if isinstance(single, str) else names


def not_stored_statements(events: Iterable[EventLine]) -> Statements:
    """Every picture a ``snapshot_taken`` of the bundle says its seal could not store (``not_stored``), with
    ``{"device_id", "reason", "seq"}`` of each such event (``reason`` ``None`` if the seal signed none that is
    text), sorted by seal and seq. A statement counts only for a picture its trigger names: its ``trigger_seq`` is an
    event of the bundle of the same seal whose ``snapshots`` (or ``snapshot``) name the picture — one seal's word
    that it could not store a picture says nothing of another seal's picture."""
    naming: dict[tuple[str, int], set[str]] = {}  # (seal, seq) -> the pictures that signed event names
    for line in events:
        if line.envelope is not None:  # kept for the events that name a picture only: a set each, not one an event
            names, key = set(named_snapshots(line.envelope)), (line.envelope.device_id, line.envelope.seq)
            if names:
                naming[key] = names
            else:
                naming.pop(key, None)
    said: Statements = defaultdict(list)
    for line in events:
        envelope = line.envelope
        if envelope is None or envelope.type != "snapshot_taken":
            continue
        trigger_seq = envelope.payload.get("trigger_seq")
        trigger = naming.get((envelope.device_id, trigger_seq), set()) if type(trigger_seq) is int else set()
        listed = envelope.payload.get("not_stored")
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict) and isinstance(item.get("sha256"), str) and item["sha256"] in trigger:
                reason = item.get("reason") if isinstance(item.get("reason"), str) else None
                said[item["sha256"]].append({"device_id": envelope.device_id, "reason": reason, "seq": envelope.seq})
    return {sha: sorted(items, key=lambda s: (s["device_id"], s["seq"])) for sha, items in said.items()}


def lost_statements(events: Iterable[EventLine]) -> Statements:
    """Every picture a ``snapshot_lost`` of the bundle says its seal lost (``snapshot``), with ``{"device_id", "kept",
    "reason", "seq"}`` of each such event (``kept``, where the seal keeps its file, and ``reason``: ``None`` if the
    seal signed none that is text), sorted by seal and seq. A statement counts only for a picture an *earlier* event
    of the bundle of the same seal names (by seq; not a ``snapshot_lost``, whose own ``snapshot`` names the picture
    too): one seal's word that it lost a picture says nothing of another seal's picture. And only after the seal's
    *last* event naming it: named again, the picture was queued again, and an earlier loss is no word on it."""
    last: dict[tuple[str, str], int] = {}  # (seal, sha256) -> the highest seq of its events naming the picture
    losses: list[Envelope] = []
    for line in events:
        envelope = line.envelope
        if envelope is None:
            continue
        if envelope.type == "snapshot_lost":
            losses.append(envelope)
            continue
        for name in named_snapshots(envelope):
            key = (envelope.device_id, name)
            last[key] = max(envelope.seq, last.get(key, envelope.seq))
    said: Statements = defaultdict(list)
    for envelope in losses:
        sha, reason, kept = (envelope.payload.get(key) for key in ("snapshot", "reason", "kept"))
        if isinstance(sha, str) and last.get((envelope.device_id, sha), envelope.seq) < envelope.seq:
            reason, kept = (value if isinstance(value, str) else None for value in (reason, kept))
            said[sha].append({"device_id": envelope.device_id, "kept": kept, "reason": reason, "seq": envelope.seq})
    return {sha: sorted(items, key=lambda s: (s["device_id"], s["seq"])) for sha, items in said.items()}


def every_seal(statements: list[dict[str, Any]], seals: set[str]) -> bool:
    """Whether each of ``seals`` (those whose events, other than a ``snapshot_lost``, name a picture) made one of
    ``statements``: two seals may name one black frame, and one seal's word says nothing of the other's copy."""
    return bool(seals) and seals <= {statement["device_id"] for statement in statements}


def _absence_problem(
    record: dict[str, Any],
    said: list[dict[str, Any]],
    refused: bool = False,
    lost: list[dict[str, Any]] | None = None,
    seals: set[str] | None = None,
) -> str | None:
    """What is wrong in a line's ``absent_reason`` and ``not_stored`` (format 2): ``not_stored`` is not every
    statement of the bundle's events that the seal could not store the picture, or ``absent_reason`` is not what the
    line and those statements say (``refused``: the court received the picture's bytes and refused them). From
    format 4 on (``lost`` not ``None``), ``snapshot_lost`` must be every statement of the bundle's events that the
    seal lost the picture, and a reason from the seals' word needs the word of every seal naming the picture
    (``seals``): ``not_stored_by_seal`` first, then ``lost_on_seal``; before, any one statement made a picture
    ``not_stored_by_seal`` (as the exporter of formats 2 and 3 wrote it) and the line knows no loss."""
    if record.get("not_stored") != said:
        return f"not_stored is {shown(record.get('not_stored'))}, but the bundle's signed events say {shown(said)}"
    if lost is not None and record.get("snapshot_lost") != lost:
        listed = shown(record.get("snapshot_lost"))
        return f"snapshot_lost is {listed}, but the bundle's signed events say {shown(lost)}"
    seals = seals or set()
    if record.get("present") is True:
        expected = None
    elif record.get("received_at") is not None:
        expected = LOST
    elif refused:
        expected = REFUSED_BY_COURT
    elif lost is None:
        expected = NOT_STORED_BY_SEAL if said else NOT_RECEIVED
    elif every_seal(said, seals):
        expected = NOT_STORED_BY_SEAL
    else:
        expected = LOST_ON_SEAL if every_seal(lost, seals) else NOT_RECEIVED
    if record.get("absent_reason") != expected:
        return f"absent_reason {shown(record.get('absent_reason'))}, not {shown(expected)}"
    return None


def _size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _record_problem(
    record: dict[str, Any],
    seals: set[str],
    data: bytes | None,
    keys: set[str] = SNAPSHOT_KEYS,
    bundle_seals: frozenset[str] = frozenset(),
) -> str | None:
    """What is wrong in a snapshots.jsonl line: its keys are not ``keys``; its seal is not one whose event names it
    (held, any seal of the bundle: ``bundle_seals``); present, its size is not the file's or it has no received_at;
    not present, it has one of size and received_at without the other."""
    if set(record) != keys:
        return f"its keys are not {sorted(keys)}"
    device_id = record.get("device_id")
    allowed = seals | bundle_seals if record.get("present") is True else seals
    if not isinstance(device_id, str) or (seals and device_id not in allowed):
        return f"device_id {shown(record.get('device_id'))} is not a seal whose event names it"
    size, received_at = record.get("size"), record.get("received_at")
    if record.get("present") is True and data is not None:
        if size != len(data) or isinstance(size, bool):
            return f"size {shown(size)}, but the file has {len(data)} bytes"
        if moment(received_at) is None:
            return "no received_at time"
    elif record.get("present") is False and (size, received_at) != (None, None):
        if not _size(size) or moment(received_at) is None:
            return "not held, yet only one of size and received_at, or not a size and a time"
    return None


def _lost(record: dict[str, Any]) -> bool:
    """A line of a picture the court received (it has a received_at) but no longer holds."""
    return record.get("present") is False and record.get("received_at") is not None


def check_snapshots(
    check: Check,
    bundle: Bundle,
    events: Iterable[EventLine],
    bundle_format: str = FORMAT_1,
    bundle_seals: frozenset[str] = frozenset(),
) -> None:
    """The check, of a bundle of ``bundle_format`` (its lines' keys differ: format 1 has no ``absent_reason``, 2 no
    ``refused``, 3 no ``snapshot_lost``) whose seals are ``bundle_seals``."""
    keys = {FORMAT_1: SNAPSHOT_KEYS, FORMAT_2: SNAPSHOT_KEYS_2, FORMAT_3: SNAPSHOT_KEYS_3}.get(
        bundle_format, SNAPSHOT_KEYS_4
    )
    since_3, since_4 = keys in (SNAPSHOT_KEYS_3, SNAPSHOT_KEYS_4), keys is SNAPSHOT_KEYS_4
    said, lost_said = not_stored_statements(events), lost_statements(events)
    named: dict[str, set[str]] = defaultdict(set)  # sha256 -> the seals whose events name it
    naming: dict[str, set[str]] = defaultdict(set)  # sha256 -> ... whose events other than a snapshot_lost name it
    for line in events:
        envelope = line.envelope
        if envelope is not None:
            for name in named_snapshots(envelope):
                named[name].add(envelope.device_id)
                if envelope.type != "snapshot_lost":
                    naming[name].add(envelope.device_id)
    try:
        records = object_lines(bundle.jsonl("snapshots.jsonl"), "snapshots.jsonl")
    except ValueError as exc:
        check.fail(str(exc))
        return
    listed: dict[str, bool] = {}
    lost = not_stored = lost_on_seal = refused = 0
    for record in records:
        sha, present = record.get("sha256"), record.get("present")
        if not isinstance(sha, str) or not isinstance(present, bool) or sha in listed:
            check.fail(f"snapshots.jsonl: a bad or repeated line for {shown(sha)}")
            continue
        listed[sha] = present
        if sha not in named:
            check.fail(f"snapshot {cut(sha)} is named by no event in the bundle")
        if present and not bundle.has(f"snapshots/{sha}.jpg"):
            check.fail(f"snapshot {cut(sha)} is listed as present but its file snapshots/….jpg is missing")
        data = bundle.get(f"snapshots/{sha}.jpg")
        problem = _record_problem(record, named.get(sha, set()), data, keys, bundle_seals)
        if problem is None and since_3:
            problem = refused_problem(record, sha, named.get(sha, set()))
        if problem is None and keys is not SNAPSHOT_KEYS:
            refused_here = refused_copy(record, sha) is not None
            losses = lost_said.get(sha, []) if since_4 else None
            problem = _absence_problem(record, said.get(sha, []), refused_here, losses, naming.get(sha, set()))
        if problem is None and since_3:
            check_refused_file(check, bundle, record, sha)
        if problem:
            check.fail(f"snapshots.jsonl, {cut(sha)}: {problem}")
        elif _lost(record):
            lost += 1
            check.fail(
                f"快照 {cut(sha)} 法院已于 {record['received_at']} 收到（{record['size']} 字节），"
                "但其文件现已缺失或被改动 / "
                f"snapshot {cut(sha)} was received by the court at {record['received_at']} ({record['size']} bytes), "
                "but its file is now missing or altered in the court's store"
            )
        elif record.get("absent_reason") == REFUSED_BY_COURT:
            refused += 1
            copy = refused_copy(record, sha)
            assert copy is not None  # the line's absent_reason was checked
            check.note(refused_note(sha, copy, bundle.has(f"refused/{sha}.jpg")))
        elif present:
            continue
        elif every_seal(said.get(sha, []), naming[sha]) if since_4 else said.get(sha):  # 1-3: as their exporter
            not_stored += 1
            check.note(_not_stored_note(sha, said[sha]))
        elif every_seal(lost_said.get(sha, []), naming[sha]):
            lost_on_seal += 1
            check.note(_lost_on_seal_note(sha, lost_said[sha]))
        elif said.get(sha) or lost_said.get(sha):
            check.note(_partial_note(sha, [*said.get(sha, []), *lost_said.get(sha, [])], naming[sha]))
    for path, data in sorted(bundle.under("snapshots/").items()):
        sha = path.removeprefix("snapshots/").removesuffix(".jpg")
        if hashlib.sha256(data).hexdigest() != sha:
            check.fail(f"{path}: its bytes do not hash to its name")
        if not listed.get(sha, False):
            check.fail(f"{path} is not listed as present in snapshots.jsonl")
    check_refused_members(check, bundle, set(listed) if since_3 else set())
    for sha in sorted(named - listed.keys()):
        check.fail(f"snapshot {cut(sha)}, named by an event, is not listed in snapshots.jsonl")
    if not records and not named and check.status is Status.OK:
        check.absent("no event names a snapshot / 事件未提及照片")
        return
    present = sum(listed.values())
    never = len(listed) - present - lost - not_stored - lost_on_seal - refused
    check.summary = (
        f"{present} 张照片在包内，{not_stored} 张封条签名声明未能存储，{lost_on_seal} 张封条签名声明已在封条上丢失，"
        f"{never} 张事件提及但服务器未收到，{refused} 张服务器收到但拒收（隔离），{lost} 张服务器收到后丢失或被改动 / "
        f"{present} snapshots present, {not_stored} the seal signed it could not store, {lost_on_seal} the seal "
        f"signed it lost, {never} named but never received, {refused} received and refused by the court "
        f"(quarantined), {lost} received but lost or altered"
    )


def _not_stored_note(sha: str, said: list[dict[str, Any]]) -> str:
    """A picture the seal signed it could not store: it never existed to be sent (not lost on the way)."""
    first = said[0]
    reason = first["reason"] or "—"
    return (
        f"快照 {cut(sha)} 封条未能存储（封条 {first['device_id']} 序号 {first['seq']} 的签名事件：{reason}），"
        "从未发出 / "
        f"snapshot {cut(sha)} was not stored by the seal ({first['device_id']} seq {first['seq']}, signed: {reason}): "
        "it was never sent"
    )


def _lost_on_seal_note(sha: str, said: list[dict[str, Any]]) -> str:
    """A picture the seal signed it lost (``snapshot_lost``) after naming it. A seal signs one only for a picture the
    court had not receipted, which may be one the court received (its receipt lost): that the court never received it
    is the court's word, not the seal's."""
    first = said[0]
    reason = cut(first["reason"] or "—")
    return (
        f"快照 {cut(sha)}：封条签名声明法院回执前其副本已在封条上丢失（封条 {first['device_id']} 序号 {first['seq']} "
        f"的签名事件：{reason}）；法院未收到为法院所述 / "
        f"snapshot {cut(sha)}: the seal signed that it lost its copy before the court receipted it "
        f"({first['device_id']} seq {first['seq']}, signed: {reason}); that the court never received it is the "
        "court's word"
    )


def _partial_note(sha: str, said: list[dict[str, Any]], seals: set[str]) -> str:
    """A picture some seals naming it signed they could not store, or lost, but not every one: another seal's copy
    may still have been sent, so it counts as never received."""
    spoke = sorted({statement["device_id"] for statement in said})
    silent = ", ".join(sorted(seals - set(spoke))) or "—"
    return (
        f"快照 {cut(sha)}：封条 {', '.join(spoke)} 签名声明未能存储或已丢失其副本，但同样提及它的封条 {silent} "
        "未作此声明，故计为服务器未收到 / "
        f"snapshot {cut(sha)}: seal {', '.join(spoke)} signed it could not store or lost its copy, but seal "
        f"{silent}, whose events name it too, did not: counted as never received"
    )
