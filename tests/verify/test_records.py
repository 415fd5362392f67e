"""The court's records in a bundle — alarms, commands, removal requests, the seals' records, the consistency
proofs' lines — are of the form docs/evidence.md states, and every file a bundle holds is there (``records``); each
event was signed with its seal's key *then* (``seal_keys``); a zip entry whose name a reader cuts or rewrites is
refused by name. Each attack is re-signed with the real log key: only the checks can catch it."""

from __future__ import annotations

import base64
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from seal_protocol import canonical_json, parse_ts, utc_now_ms
from seal_protocol.signing import generate_signing_key, public_key_b64
from seal_verify import Status, alarm_records, verify_bundle
from server.alarms.event_details import MARKS, OPENING, REPORT_MARKS
from server.alarms.state import AlarmKind, AlarmState, Severity
from server.core.db import make_engine, make_session_factory
from server.evidence.checkpoints import LogKey
from server.ingest.alarming import DISARMED_WHILE_SEALED
from tests.server.helpers import CASE_A
from tests.verify.world import build_world, join, lines, read_members, resign, zip_members


@dataclass(frozen=True)
class Signed:
    """A real bundle's members and the log key that signed it (to re-sign them as its holder would)."""

    members: dict[str, bytes]
    log_key: LogKey

    def verdict(self, members: dict[str, bytes], **kwargs: Any) -> Any:
        data = zip_members(resign(members, self.log_key)).getvalue()
        return verify_bundle(io.BytesIO(data), log_key=self.log_key.verifier(), **kwargs)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Signed:
    tmp_path = tmp_path_factory.mktemp("records")
    shutil.copyfile(migrated_sqlite, tmp_path / "court.db")
    engine = make_engine(f"sqlite:///{tmp_path / 'court.db'}")
    try:
        world = build_world(make_session_factory(engine), f"sqlite:///{tmp_path / 'court.db'}", tmp_path)
        path = world.export(CASE_A, tmp_path / "case.zip").path
        return Signed(read_members(path), world.log_key)
    finally:
        engine.dispose()


def test_the_genuine_bundle_holds_every_record_of_its_form(signed: Signed) -> None:
    verdict = signed.verdict(signed.members)
    assert verdict.trusted and not verdict.warnings, verdict.text()
    assert verdict.check("records").status is Status.OK
    assert verdict.check("seal_keys").status is Status.OK


COMMAND = {
    "action": "disarm",
    "answer_seq": None,
    "answered_at": None,
    "args": {},
    "device_id": "seal-a1",
    "expires_at": "2026-12-04T09:30:00.000Z",
    "id": 1,
    "issued_at": "2026-12-04T09:00:00.000Z",
    "issued_by": "judge",
    "reason": None,
    "result": None,
    "signed": base64.b64encode(b"signed bytes").decode(),
    "state": "pending",
}


def _first_alarm(signed: Signed) -> dict[str, Any]:
    return json.loads(lines(signed.members["alarms.jsonl"])[0])


@pytest.mark.parametrize("path", ["alarms.jsonl", "commands.jsonl", "removal.jsonl", "log/consistency.jsonl"])
@pytest.mark.parametrize("body", [b"this is not json\n", b"\xff\xfe\x00garbage\n", b"[1,2]\n", b"{}\n"])
def test_a_record_file_that_is_no_record_fails(signed: Signed, path: str, body: bytes) -> None:
    verdict = signed.verdict({**signed.members, path: body})
    assert "records" in verdict.failed, verdict.text()
    assert any(path in p for p in verdict.check("records").problems)


def test_a_record_nested_too_deep_fails_without_a_trace(signed: Signed) -> None:
    verdict = signed.verdict({**signed.members, "alarms.jsonl": b"[" * 200_000 + b"]" * 200_000 + b"\n"})
    assert verdict.failed == ["records"], verdict.text()
    assert any("nests too deep" in p for p in verdict.check("records").problems)


EDITS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "an alarm's count as text": ("alarms.jsonl", lambda a: a | {"count": "1"}),
    "an alarm's details a list": ("alarms.jsonl", lambda a: a | {"details": [1]}),
    "an alarm's first_event of other keys": ("alarms.jsonl", lambda a: a | {"first_event": {"a": 1}}),
    "an alarm's opened_at no time": ("alarms.jsonl", lambda a: a | {"opened_at": "yesterday"}),
    "an alarm with a key more": ("alarms.jsonl", lambda a: a | {"forged": True}),
    "an alarm with a key less": ("alarms.jsonl", lambda a: {k: v for k, v in a.items() if k != "state"}),
    "a seal's bindings a string": ("seals/seal-a1.json", lambda s: s | {"bindings": "x"}),
    "a seal's enrolment of a number": ("seals/seal-a1.json", lambda s: s | {"enrolment": [1]}),
    "a binding's bound_at an object": (
        "seals/seal-a1.json",
        lambda s: s | {"bindings": [s["bindings"][0] | {"bound_at": {}}]},
    ),
    "a seal's enrolment in another case": (
        "seals/seal-a1.json",
        lambda s: s | {"enrolment": [s["enrolment"][0] | {"case_no": "(2020)苏0214执1号"}]},
    ),
    "a case's created_at a number": ("case.json", lambda c: c | {"created_at": 0}),
    "an alarm of a kind the server never raises": ("alarms.jsonl", lambda a: a | {"kind": "burglary"}),
    "an alarm of no severity the server has": ("alarms.jsonl", lambda a: a | {"severity": "extreme"}),
    "an alarm of no state the server has": ("alarms.jsonl", lambda a: a | {"state": "snoozed"}),
    "an alarm's received_at no time": ("alarms.jsonl", lambda a: _marked(a, received_at="yesterday")),
    "an alarm's delayed_s negative": ("alarms.jsonl", lambda a: _marked(a, delayed_s=-5)),
    "an alarm's delayed_s as text": ("alarms.jsonl", lambda a: _marked(a, delayed_s="36 h")),
    "an alarm's clock_gap_s a fraction": ("alarms.jsonl", lambda a: _marked(a, clock_gap_s=1.5)),
    "an alarm's clock_synced as text": ("alarms.jsonl", lambda a: _marked(a, clock_synced="no")),
    "an alarm's simulated as text": ("alarms.jsonl", lambda a: _marked(a, simulated="true")),
    "an alarm's seq as text": ("alarms.jsonl", lambda a: _marked(a, seq="3")),
    "an alarm's opening a list": ("alarms.jsonl", lambda a: _marked(a, opening=[1])),
    "an alarm's opening of other keys": ("alarms.jsonl", lambda a: _marked(a, opening={"note": "x"})),
    "an alarm's opening's delayed_s a bool": ("alarms.jsonl", lambda a: _marked(a, opening={"delayed_s": True})),
    "a case_mismatch's intrusions a list": ("alarms.jsonl", lambda a: _mismatched(a, intrusions=[1])),
    "a case_mismatch's intrusions.count as text": ("alarms.jsonl", lambda a: _mismatched(a, count="1")),
    "a case_mismatch's intrusions.seqs a string": ("alarms.jsonl", lambda a: _mismatched(a, seqs="2")),
    "a case_mismatch's intrusions.last a list": ("alarms.jsonl", lambda a: _mismatched(a, last=[1])),
    "a case_mismatch's intrusions.last a string": ("alarms.jsonl", lambda a: _mismatched(a, last="intrusion")),
    "a case_mismatch's intrusions.last of other keys": ("alarms.jsonl", lambda a: _mismatched(a, note="x")),
    "a case_mismatch's intrusions.last lacking its seq": ("alarms.jsonl", lambda a: _mismatched(a, seq=None)),
    "a case_mismatch's intrusions.last.seq as text": ("alarms.jsonl", lambda a: _mismatched(a, seq="2")),
    "a case_mismatch's intrusions.last.ts no time": ("alarms.jsonl", lambda a: _mismatched(a, ts="yesterday")),
    "a case_mismatch's intrusions.last.event_type a number": ("alarms.jsonl", lambda a: _mismatched(a, event_type=1)),
    "a case_mismatch's intrusions.last.claimed_case_no a number": (
        "alarms.jsonl",
        lambda a: _mismatched(a, claimed_case_no=9),
    ),
    "a case_mismatch's intrusions.last.delayed_s negative": ("alarms.jsonl", lambda a: _mismatched(a, delayed_s=-5)),
    "a case_mismatch's intrusions.last.simulated as text": ("alarms.jsonl", lambda a: _mismatched(a, simulated="1")),
}

#: What the court writes in a ``case_mismatch`` alarm's ``intrusions`` (server/ingest/case_mismatch.py) once an
#: intrusion was among the refused events: ``last`` is its ``event_details``, with every mark of its report.
LAST_INTRUSION = {
    "claimed_case_no": "(2026)苏0214执9号",
    "clock_gap_s": -3600,
    "clock_synced": False,
    "event_type": "intrusion",
    "received_at": "2026-12-04T10:00:00.000Z",
    "seq": 2,
    "simulated": True,
    "ts": "2026-12-04T11:00:00.000Z",
}


def _mismatched(alarm: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``alarm`` as a ``case_mismatch`` alarm recording an intrusion, with ``changes``: of ``intrusions`` itself,
    its ``count``, ``seqs`` or ``last``, else of ``last``'s keys (``None``: the key removed)."""
    record: dict[str, Any] = {"count": 1, "seqs": [2], "last": LAST_INTRUSION}
    for key in ("count", "seqs", "last"):
        if key in changes:
            record[key] = changes.pop(key)
    if changes:
        edited = LAST_INTRUSION | changes
        record["last"] = {key: value for key, value in edited.items() if value is not None}
    intrusions = changes.pop("intrusions", record)
    details = alarm["details"] | {"claimed_case_no": LAST_INTRUSION["claimed_case_no"], "intrusions": intrusions}
    return alarm | {"kind": "case_mismatch", "details": details}


def _marked(alarm: dict[str, Any], **marks: Any) -> dict[str, Any]:
    return alarm | {"details": alarm["details"] | marks}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_record_of_another_form_fails(signed: Signed, edit: str) -> None:
    path, change = EDITS[edit]
    members = dict(signed.members)
    if path.endswith(".jsonl"):
        first, *rest = lines(members[path])
        members[path] = join([canonical_json(change(json.loads(first))), *rest])
    else:
        members[path] = canonical_json(change(json.loads(members[path])))
    verdict = signed.verdict(members)
    assert "records" in verdict.failed, verdict.text()


def test_an_alarm_with_every_mark_of_its_type_passes(signed: Signed) -> None:
    opening = {"event_type": "intrusion", "seq": 2, "ts": utc_now_ms(), "received_at": utc_now_ms(), "delayed_s": 9}
    marks = {"received_at": utc_now_ms(), "clock_gap_s": -3600, "clock_synced": None, "simulated": True}
    first, *rest = lines(signed.members["alarms.jsonl"])
    alarm = json.loads(first)
    alarm = alarm | {"kind": "clock_unsynced", "details": alarm["details"] | marks | {"opening": opening}}
    verdict = signed.verdict({**signed.members, "alarms.jsonl": join([canonical_json(alarm), *rest])})
    assert verdict.check("records").status is Status.OK, verdict.text()


def test_a_case_mismatch_alarm_recording_an_intrusion_passes(signed: Signed) -> None:
    for alarm in (_mismatched(_first_alarm(signed)), _mismatched(_first_alarm(signed), delayed_s=9, simulated=None)):
        first, *rest = lines(signed.members["alarms.jsonl"])
        verdict = signed.verdict({**signed.members, "alarms.jsonl": join([canonical_json(alarm), *rest])})
        assert verdict.check("records").status is Status.OK, verdict.text()


def test_the_alarm_kinds_seal_verify_knows_are_the_server_s() -> None:
    """seal-verify may not import the server (tests/test_layout.py): its lists are held to the server's here."""
    assert {k.value for k in AlarmKind} == alarm_records.ALARM_KINDS
    assert {s.value for s in Severity} == alarm_records.SEVERITIES
    assert {s.value for s in AlarmState} == alarm_records.STATES
    # and the marks it checks are the court's (server/alarms/event_details.py, server/ingest/alarming.py)
    assert set(REPORT_MARKS) | {"event_type", "seq", "ts"} == alarm_records._REPORT_MARKS
    assert MARKS - {OPENING} | {"late", DISARMED_WHILE_SEALED} == set(alarm_records.MARKS)
    assert alarm_records.OPENING == OPENING


def test_commands_and_removal_requests_of_the_stated_form_pass_and_others_fail(signed: Signed) -> None:
    good = signed.verdict({**signed.members, "commands.jsonl": join([canonical_json(COMMAND)])})
    assert good.check("records").status is Status.OK, good.text()
    for wrong in ({"signed": "not base64!"}, {"answer_seq": True}, {"args": None}, {"result": "ok"}):
        bad = signed.verdict({**signed.members, "commands.jsonl": join([canonical_json(COMMAND | wrong)])})
        assert bad.failed == ["records"], (wrong, bad.text())


@pytest.mark.parametrize(
    "path",
    [
        "alarms.jsonl",
        "commands.jsonl",
        "removal.jsonl",
        "audit.jsonl",
        "log/consistency.jsonl",
        "README.txt",
        "report.pdf",
    ],
)
def test_a_file_every_bundle_holds_removed_and_resigned_fails(signed: Signed, path: str) -> None:
    members = {name: data for name, data in signed.members.items() if name != path}
    if path == "audit.jsonl":
        del members["audit-meta.jsonl"]  # both gone: the audit check alone called that "absent"
    verdict = signed.verdict(members)
    assert "records" in verdict.failed, verdict.text()
    assert any(f"{path} is missing" in p for p in verdict.check("records").problems)


def test_the_exporters_staged_bundle_has_no_report_yet(signed: Signed) -> None:
    members = {name: data for name, data in signed.members.items() if name != "report.pdf"}
    assert signed.verdict(members, staged=True).trusted
    assert signed.verdict({**signed.members, "report.pdf": b"not a pdf"}).failed == ["records"]


def test_a_removal_proof_file_no_request_lists_fails(signed: Signed) -> None:
    verdict = signed.verdict({**signed.members, f"removal/{'0' * 64}.pdf": b"%PDF-1.4 a proof nobody filed"})
    assert "records" in verdict.failed, verdict.text()


# -- each event signed with its seal's key then ---------------------------------------------------------------------


def _with_retired_key(signed: Signed, case_no: str | None) -> dict[str, bytes]:
    """seal-a1's record rewritten as if its key had been replaced before its events: the key that signed them moved
    to an earlier registration, a new key (that signed nothing) registered since."""
    record = json.loads(signed.members["seals/seal-a1.json"])
    new = public_key_b64(generate_signing_key())
    first = record["enrolment"][0]
    record["enrolment"] = [
        first | {"at": "2026-01-01T00:00:00.000Z", "case_no": case_no},
        first | {"at": "2026-06-01T00:00:00.000Z", "public_key": new},
    ]
    return {**signed.members, "seals/seal-a1.json": canonical_json(record | {"public_key": new})}


def test_events_signed_with_a_key_replaced_before_they_came_are_warned_of(signed: Signed) -> None:
    verdict = signed.verdict(_with_retired_key(signed, None))
    check = verdict.check("seal_keys")
    assert "seal_keys" in verdict.failed, verdict.text()  # the log's registration is not the one now listed
    assert any("audit.jsonl line" in p and "seal-a1" in p for p in check.problems)
    assert check.warnings and all("seal-a1" in w and "replaced at 2026-06-01" in w for w in check.warnings)
    assert "⚠ 事件 line 1 (seal-a1#1)" in verdict.text()


def test_a_key_replaced_between_its_registration_and_the_events_is_a_warning(signed: Signed) -> None:
    """The registration the log holds is listed as it was; a new key registered after it, before the seal's events
    came: the events verify only with the retired key — a warning, not a failure (the signatures are genuine)."""
    record = json.loads(signed.members["seals/seal-a1.json"])
    first = record["enrolment"][0]
    metas = [json.loads(line) for line in lines(signed.members["events-meta.jsonl"])]
    came = min(parse_ts(m["received_at"]) for m in metas if m["device_id"] == "seal-a1")
    between = parse_ts(first["at"]) + (came - parse_ts(first["at"])) / 2
    assert parse_ts(first["at"]) < between < came
    new = public_key_b64(generate_signing_key())
    record["enrolment"] = [first, first | {"at": utc_now_ms(between), "public_key": new}]
    verdict = signed.verdict({**signed.members, "seals/seal-a1.json": canonical_json(record | {"public_key": new})})
    assert verdict.trusted and verdict.warnings == ["seal_keys"], verdict.text()
    assert len(verdict.check("seal_keys").warnings) == 6  # each of seal-a1's events
    assert "Verdict: no check failed, but with WARNINGS (seal_keys)" in verdict.text()


def test_a_retired_key_enrolled_in_another_case_fails_the_records(signed: Signed) -> None:
    verdict = signed.verdict(_with_retired_key(signed, "(2020)其他案1号"))
    assert "records" in verdict.failed and verdict.check("seal_keys").warnings, verdict.text()


def test_a_seal_re_registered_with_its_own_key_is_no_warning(signed: Signed) -> None:
    record = json.loads(signed.members["seals/seal-a1.json"])
    again = record["enrolment"][0] | {"at": "2099-01-01T00:00:00.000Z", "case_no": None}  # moved away later
    members = {
        **signed.members,
        "seals/seal-a1.json": canonical_json(record | {"enrolment": [*record["enrolment"], again]}),
    }
    verdict = signed.verdict(members)
    assert verdict.trusted and not verdict.warnings, verdict.text()


# -- a zip entry whose name a reader cuts ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.jsonl", "log/key.txt"])
def test_an_entry_name_with_a_nul_byte_is_refused_by_name(signed: Signed, name: str) -> None:
    """zipfile writes a name only up to a NUL byte: the NUL is put into the zip's bytes, as a forger's tool would."""
    data = zip_members(resign(signed.members, signed.log_key)).getvalue()
    padded = name[:-2] + "\x00x"  # same length: the headers' name lengths stay right
    forged = data.replace(name.encode(), padded.encode())
    assert zipfile.ZipFile(io.BytesIO(forged)).getinfo(name[:-2]).orig_filename == padded
    verdict = verify_bundle(io.BytesIO(forged), log_key=signed.log_key.verifier())
    assert "bundle" in verdict.failed, verdict.text()
    assert any("NUL byte" in p and "refused" in p for p in verdict.check("bundle").problems)
