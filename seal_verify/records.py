"""The ``records`` check: the court's own records in a bundle — the case, its seals, alarms, commands, removal
requests, the consistency proofs' lines — are of the form ``docs/evidence.md`` states (each key, each JSON type),
read with the bundle's canonical-JSON reader (an alarm's kind, severity, state and the court's marks in its details
too: :mod:`seal_verify.alarm_records`); and every file the bundle's format always holds is there.

They are the server's record, signed only with the log key: their form says nothing of their truth, but a file of
another form is no bundle the exporter wrote (``server/export/gather.py``), and a reader of it (the report, another
verifier) would meet values it cannot read. One table of shapes, :data:`SHAPES`, is the whole of the form.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from seal_verify.alarm_records import alarm_problems
from seal_verify.bundle import FIXED_PATHS, Bundle, load_object, object_lines
from seal_verify.event_checks import moment, normalise_case_no
from seal_verify.streamed import StreamedMember
from seal_verify.verdict import Check, shown

#: Every file a bundle of any format holds, whatever the case (an empty ``.jsonl`` file when it has no such line):
#: ``server/export/service.py`` writes each. ``quarantine.jsonl`` (format 3 on) is ``hash_chains``', the time stamp's
#: files are there only with a TSA. The staged bundle the exporter verifies has no report yet (``staged``).
#: (Of the layout's fixed files: the manifest and its signature are read before any check.)
REQUIRED = tuple(
    sorted(
        FIXED_PATHS - {"manifest.json", "manifest.sig", "quarantine.jsonl", "log/checkpoint.tsr", "log/tsa-chain.pem"}
    )
)
REPORT = "report.pdf"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: A removal proof's file in the bundle, by its media type: ``removal/<sha256><extension>``.
PROOF_EXTENSIONS = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}


@dataclass(frozen=True)
class Obj:
    """A JSON object with exactly these keys, each of its shape."""

    keys: Mapping[str, Shape]


@dataclass(frozen=True)
class Many:
    """A JSON array, each item of the shape."""

    item: Shape


#: A shape: a kind of :data:`_KINDS` (``"ts|null"``: one of several), an object, an array, or one of several shapes.
Shape = str | Obj | Many | tuple["Shape", ...]


def _is_base64(value: Any) -> bool:
    """Canonical base64 (RFC 4648 §4, padded; §3.5: the same text written again)."""
    if not isinstance(value, str):
        return False
    try:
        return base64.b64encode(base64.b64decode(value, validate=True)).decode("ascii") == value
    except (binascii.Error, ValueError):
        return False


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


#: The kinds of value a shape names: each a test of one JSON value.
_KINDS = {
    "str": lambda v: isinstance(v, str),
    "count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),  # free-form (an alarm's details, a command's args)
    "ts": lambda v: isinstance(v, str) and moment(v) is not None,
    "date": _is_date,
    "sha256": lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None,
    "base64": _is_base64,
    "media_type": lambda v: v in PROOF_EXTENSIONS,
}

EVENT_REF = Obj({"device_id": "str", "seq": "count"})
#: ``docs/evidence.md`` ("The case, the seals"; "Alarms, commands, removal requests, audit"; "The Merkle log"), as
#: ``server/export/gather.py`` writes them. ``seals/`` stands for each ``seals/<device_id>.json``.
SHAPES: dict[str, Obj] = {
    "case.json": Obj(
        {
            "address": "str",
            "applicant": "str",
            "case_no": "str",
            "court_code": "str|null",
            "court_name": "str|null",
            "created_at": "ts",
            "debtor": "str",
            "judge": "str",
            "judge_phone": "str",
            "sealed_property": "str",
            "seizure_expires_on": "date|null",
            "status": "str",
            "status_changed_at": "ts|null",
        }
    ),
    "seals/": Obj(
        {
            "bindings": Many(
                Obj({"bound_at": "ts", "bound_by": "str|null", "unbound_at": "ts|null", "unbound_by": "str|null"})
            ),
            "device_id": "str",
            "enrolment": Many(Obj({"actor": "str", "at": "ts", "case_no": "str|null", "public_key": "base64"})),
            "location": "str",
            "public_key": "base64",
            "registered_at": "ts",
        }
    ),
    "alarms.jsonl": Obj(
        {
            "acknowledged_at": "ts|null",
            "acknowledged_by": "str|null",
            "acknowledged_note": "str|null",
            "closed_at": "ts|null",
            "closed_by": "str|null",
            "closed_note": "str|null",
            "count": "count",
            "details": "object",
            "device_id": "str",
            "first_event": ("null", EVENT_REF),
            "id": "count",
            "kind": "str",
            "last_event": ("null", EVENT_REF),
            "last_seen_at": "ts",
            "opened_at": "ts",
            "severity": "str",
            "state": "str",
        }
    ),
    "commands.jsonl": Obj(
        {
            "action": "str",
            "answer_seq": "count|null",
            "answered_at": "ts|null",
            "args": "object",
            "device_id": "str",
            "expires_at": "ts",
            "id": "count",
            "issued_at": "ts",
            "issued_by": "str|null",
            "reason": "str|null",
            "result": "object|null",
            "signed": "base64|null",
            "state": "str",
        }
    ),
    "removal.jsonl": Obj(
        {
            "decided_at": "ts|null",
            "decided_by": "str|null",
            "decision_reasons": "str|null",
            "disarmed_at": "ts|null",
            "disarms": Many(Obj({"command_id": "count", "device_id": "str"})),
            "filed_at": "ts",
            "filed_by": "str|null",
            "ground": "str",
            "id": "count",
            "lifted_at": "ts|null",
            "lifted_by": "str|null",
            "proofs": Many(
                Obj(
                    {
                        "filename": "str",
                        "media_type": "media_type",
                        "present": "bool",
                        "sha256": "sha256",
                        "size": "count",
                        "uploaded_at": "ts",
                    }
                )
            ),
            "state": "str",
            "statement": "str",
            "steps": Many(
                Obj(
                    {
                        "action": "str",
                        "actor": "str",
                        "at": "ts",
                        "from_state": "str|null",
                        "note": "str",
                        "to_state": "str",
                    }
                )
            ),
            "views": Many(Obj({"at": "ts", "author": "str|null", "text": "str"})),
            "waivers": Many(
                Obj(
                    {
                        "decided_at": "ts",
                        "decided_by": "str|null",
                        "device_id": "str",
                        "found": "str|null",
                        "reasons": "str",
                    }
                )
            ),
        }
    ),
    "log/consistency.jsonl": Obj(
        {"hashes": Many("base64"), "new_size": "count", "old_root": "base64", "old_size": "count"}
    ),
}


def shape_problem(value: Any, shape: Shape, where: str = "") -> str | None:
    """Where ``value`` is not of ``shape`` (the path of keys and indices to it) and why; ``None`` if it is."""
    if isinstance(shape, tuple):
        problems = [shape_problem(value, one, where) for one in shape]
        return None if None in problems else next(p for p in problems if p is not None)
    if isinstance(shape, str):
        if any(_KINDS[kind](value) for kind in shape.split("|")):
            return None
        return f"{where or 'the value'} is {shown(value)}, not {' or '.join(shape.split('|'))}"
    if isinstance(shape, Many):
        if not isinstance(value, list):
            return f"{where or 'the value'} is {shown(value)}, not a list"
        found = (shape_problem(item, shape.item, f"{where}[{n}]") for n, item in enumerate(value))
        return next((p for p in found if p is not None), None)
    if not isinstance(value, dict):
        return f"{where or 'the value'} is {shown(value)}, not an object"
    if set(value) != set(shape.keys):
        missing, extra = sorted(set(shape.keys) - set(value)), sorted(set(value) - set(shape.keys))
        return f"{where or 'the object'} lacks {shown(missing)} and has {shown(extra)} besides its keys"
    found = (shape_problem(value[key], inner, f"{where}.{key}".lstrip(".")) for key, inner in shape.keys.items())
    return next((p for p in found if p is not None), None)


def _files(bundle: Bundle, path: str) -> Mapping[str, bytes | StreamedMember | None]:
    """The file at ``path`` of :data:`SHAPES`, or those under it (a folder)."""
    if path.endswith("/"):
        return bundle.under(path)
    return {path: bundle.jsonl(path) if path.endswith(".jsonl") else bundle.get(path)}


def check_records(check: Check, bundle: Bundle, head: dict[str, Any], *, staged: bool = False) -> None:
    """Every file of :data:`REQUIRED` is in the bundle (but the report, if ``staged``), the report a PDF file; each
    file of :data:`SHAPES` is canonical JSON of its shape; a seal's enrolment names no case but the manifest's
    (``head``; the registrations that bound it elsewhere say ``null``); the removal proofs' files are those the
    requests list as present. What the README says is not read: it tells the reader not to trust its key."""
    for path in REQUIRED:
        if not bundle.has(path) and not (staged and path == REPORT):
            check.fail(f"{path} is missing: a bundle always holds it / 证据包缺少必备文件 {path}")
    report = bundle.get(REPORT)
    if report is not None and not report.startswith(b"%PDF-"):
        check.fail(f"{REPORT} is no PDF file (it does not start with %PDF-)")
    case_no, counted, proofs = head.get("case_no"), 0, []
    for path, shape in SHAPES.items():
        for name, data in sorted(_files(bundle, path).items()):
            if data is None:
                continue
            try:
                values = object_lines(data, name) if isinstance(data, StreamedMember) else [load_object(data, name)]
            except ValueError as exc:
                check.fail(str(exc))
                continue
            for n, value in enumerate(values, start=1):
                where = f"{name} line {n}" if name.endswith(".jsonl") else name
                problem = shape_problem(value, shape)
                if problem is not None:
                    check.fail(f"{where}: {problem}")
                elif path == "seals/":
                    _check_enrolment(check, name, value, case_no)
                elif path == "removal.jsonl":
                    proofs += value["proofs"]
                elif path == "alarms.jsonl":
                    for wrong in alarm_problems(value):
                        check.fail(f"{where}: {wrong} / 告警记录的内容不合格式")
            counted += len(values)
    _check_proof_files(check, bundle, proofs)
    check.summary = f"{counted} records of the court / {counted} 条法院记录"


def _check_proof_files(check: Check, bundle: Bundle, proofs: list[dict[str, Any]]) -> None:
    """Each ``removal/`` file is a proof a request lists as ``present``, each such proof's file is there (its hash is
    ``manifest_files``'); a proof the court no longer holds (``present: false``) is noted."""
    files = set(bundle.under("removal/"))
    listed: set[str] = set()
    for proof in proofs:
        path = f"removal/{proof['sha256']}{PROOF_EXTENSIONS[proof['media_type']]}"
        if proof["present"]:
            listed.add(path)
            if path not in files:
                check.fail(f"a removal proof listed as present has no file {path} / 解封申请的证明文件缺失")
        elif path not in files:  # another request may list the same file as present
            check.note(f"the court no longer holds the removal proof {path} / 法院已不再持有该证明文件")
    for path in sorted(files - listed):
        check.fail(f"{path} is no removal proof listed as present in removal.jsonl / 未登记的证明文件")


def _check_enrolment(check: Check, name: str, seal: dict[str, Any], case_no: Any) -> None:
    """A registration of the seal names the bundle's case, or none (it bound the seal elsewhere, or to no case)."""
    want = normalise_case_no(case_no) if isinstance(case_no, str) else None
    for n, entry in enumerate(seal["enrolment"]):
        named = entry["case_no"]
        if named is not None and normalise_case_no(named) != want:
            check.fail(
                f"{name}: enrolment[{n}] names case {shown(named)}, not this bundle's (a registration in another "
                "case is exported as null) / 登记记录指向其他案件"
            )
