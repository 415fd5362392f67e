"""The report's facts (:class:`~server.export.report_facts.ReportFacts`) from what the bundle holds: the gathered
records, the checkpoint and its time stamp, and ``seal-verify``'s verdict on the staged files."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from seal_protocol import parse_ts
from seal_protocol.envelope import is_simulated
from seal_protocol.wirejson import loads_wire_json
from seal_verify import BundleVerdict, Status
from seal_verify.timestamp import TimestampVerdict
from seal_verify.verdict import WARNINGS, KeyUse
from server.commands.refusals import refused_own_bytes, signed_sha256
from server.export.event_source import EventLine
from server.export.event_summary import FOLLOW_UP_TYPES, EventSummary
from server.export.gather import CaseEvidence, JsonDict
from server.export.report_facts import (
    AlarmFacts,
    Binding,
    Check,
    CheckpointFacts,
    CommandFacts,
    Enrolment,
    EventFacts,
    ExportFacts,
    HistoryEntry,
    RemovalFacts,
    ReportFacts,
    ReportTiming,
    SealFacts,
    SnapshotFacts,
    TimestampFacts,
    silences,
)

#: Problems of a failed check named in the report (all of them are in seal-verify's own verdict).
PROBLEMS_SHOWN = 5


def _at(text: str | None) -> datetime | None:
    return None if text is None else parse_ts(text)


def _at_known(text: str) -> datetime:
    moment = _at(text)
    assert moment is not None
    return moment


def report_facts(
    evidence: CaseEvidence,
    *,
    head: JsonDict,
    checkpoint: CheckpointFacts,
    stamp: TimestampVerdict | None,
    verdict: BundleVerdict,
    pictures: dict[str, bytes],
    offline_after: timedelta,
) -> ReportFacts:
    """``pictures``: the bytes of the snapshots the bundle holds, by SHA-256."""
    exported_at = _at_known(head["exported_at"])
    events = EventSummary()  # the events streamed from the database, one at a time: a case may have a million
    for line in evidence.events:
        events.add(_event(line))
    events.follow_ups(_event(line) for line in evidence.events.lines(types=FOLLOW_UP_TYPES))
    return ReportFacts(
        court=evidence.case.get("court_name") or evidence.case.get("court_code") or "",
        case_no=evidence.case_no,
        export=ExportFacts(
            by=head["exported_by"],
            at=exported_at,
            range_from=_at(head["range"]["from"]),
            range_to=_at(head["range"]["to"]),
        ),
        checkpoint=checkpoint,
        timestamp=_timestamp(stamp),
        checks=[
            _check(c.zh, c.en, c.status, _own_summary(c.name, c.summary, checkpoint), [*c.problems, *c.warnings])
            for c in verdict.checks
        ],
        seals=[_seal(record, verdict.signing_keys) for record in evidence.seals.values()],
        summary=events,
        snapshots=[
            SnapshotFacts(
                s["sha256"],
                s["device_id"],
                _at(s["received_at"]),
                pictures.get(s["sha256"]),
                s.get("absent_reason"),
                s.get("not_stored", ()),
                s.get("refused", ()),
                s.get("snapshot_lost", ()),
            )
            for s in evidence.snapshots
        ],
        alarms=[_alarm(a) for a in evidence.alarms],
        commands=[_command(c) for c in evidence.commands],
        removals=[_removal(r) for r in evidence.removal],
        offline=silences(_to_ms(evidence.events.receipts()), silence=offline_after, until=exported_at),
        audit_count=len(evidence.audit),
        quarantine=evidence.quarantine,
    )


def _to_ms(receipts: Iterable[tuple[str, datetime]]) -> Iterator[tuple[str, datetime]]:
    """The times of receipt cut to the millisecond, as ``events-meta.jsonl`` states them."""
    return ((device_id, at.replace(microsecond=at.microsecond // 1000 * 1000)) for device_id, at in receipts)


def _timestamp(stamp: TimestampVerdict | None) -> TimestampFacts | None:
    if stamp is None or not stamp.ok or stamp.gen_time is None:
        return None
    return TimestampFacts(stamp.gen_time, stamp.tsa_subject or "")


def _own_summary(name: str, summary: str, checkpoint: CheckpointFacts) -> str:
    """seal-verify's summary of a check, as the exporting server's own check of the staged files reads: the key it
    "pinned" is its own (the reader's must come from the court's publication), and the files counted are all but the
    report, which is added after."""
    if name == "log_key" and summary:
        return (
            "导出服务器自身的日志公钥（非独立锚定）/ the exporting server's own log key (no independent anchor): "
            f"{checkpoint.log_key}"
        )
    if name == "manifest_files" and summary:
        return f"{summary}；不含本报告 report.pdf / not counting this report, report.pdf"
    return summary


def _check(zh: str, en: str, status: Status, summary: str, problems: list[str]) -> Check:
    detail = "; ".join([summary, *problems[:PROBLEMS_SHOWN]] if summary else problems[:PROBLEMS_SHOWN])
    if len(problems) > PROBLEMS_SHOWN:
        detail += f"; … {len(problems) - PROBLEMS_SHOWN} more / 另有 {len(problems) - PROBLEMS_SHOWN} 条"
    ok = None if status is Status.ABSENT else status is not Status.FAILED
    return Check(zh, en, ok, detail, warning=status in WARNINGS)


def _event(line: EventLine) -> EventFacts:
    envelope = loads_wire_json(line.raw, what="event")
    return EventFacts(
        device_id=line.device_id,
        seq=line.seq,
        type=envelope["type"],
        ts=parse_ts(envelope["ts"]),
        received_at=_at_known(line.meta()["received_at"]),  # cut to the millisecond, as events-meta.jsonl states it
        leaf_index=line.leaf_index,
        payload=envelope["payload"],
    )


def _seal(record: JsonDict, signed: Iterable[KeyUse]) -> SealFacts:
    enrolment = record["enrolment"]
    return SealFacts(
        device_id=record["device_id"],
        public_key_b64=record["public_key"],
        registered_at=_at_known(record["registered_at"]),
        registered_by=enrolment[-1]["actor"] if enrolment else "",
        location=record["location"],
        bindings=[
            Binding(_at_known(b["bound_at"]), b["bound_by"] or "cli", _at(b["unbound_at"]), b["unbound_by"])
            for b in record["bindings"]
        ],
        enrolment=[
            Enrolment(_at_known(e["at"]), e["actor"], e["public_key"], e["case_no"] is not None) for e in enrolment
        ],
        signed=[use for use in signed if use.device_id == record["device_id"]],
    )


def _history(*steps: tuple[str | None, str | None, str, str | None]) -> list[HistoryEntry]:
    return [HistoryEntry(_at_known(at), actor or "system", action, note) for at, actor, action, note in steps if at]


def _alarm(a: JsonDict) -> AlarmFacts:
    details = a["details"] if isinstance(a["details"], dict) else {}
    history = _history(
        (a["acknowledged_at"], a["acknowledged_by"], "acknowledged", a["acknowledged_note"]),
        (a["closed_at"], a["closed_by"], "closed", a["closed_note"]),
    )
    return AlarmFacts(
        id=a["id"],
        device_id=a["device_id"],
        kind=a["kind"],
        severity=a["severity"],
        state=a["state"],
        opened_at=_at_known(a["opened_at"]),
        count=a["count"],
        history=history,
        simulated=is_simulated(details),
        report=_timing(details),
        opening=_timing(details.get("opening")),
    )


def _timing(details: object) -> ReportTiming | None:
    """The report marks of an alarm's details (or of their ``opening``): :mod:`server.alarms.event_details`."""
    if not isinstance(details, dict):
        return None
    delayed, gap, seq, ts = (details.get(key) for key in ("delayed_s", "clock_gap_s", "seq", "ts"))
    delayed, gap, seq = (v if isinstance(v, int) and not isinstance(v, bool) else None for v in (delayed, gap, seq))
    if delayed is None and gap is None:
        return None
    synced = details.get("clock_synced")
    return ReportTiming(
        ts if isinstance(ts, str) else None,
        seq=seq,
        delayed_s=delayed,
        clock_gap_s=gap,
        clock_synced=synced if isinstance(synced, bool) else None,
    )


def _command(c: JsonDict) -> CommandFacts:
    result: Any = c["result"]
    answer = str(result.get("result")) if isinstance(result, dict) and "result" in result else None
    digest = signed_sha256(base64.b64decode(c["signed"])) if c["signed"] else None
    return CommandFacts(
        id=c["id"],
        device_id=c["device_id"],
        action=c["action"],
        issued_by=c["issued_by"] or "cli",
        issued_at=_at_known(c["issued_at"]),
        state=c["state"],
        answer_seq=c["answer_seq"],
        answer=answer,
        reason=c["reason"],
        signed_sha256=digest,
        refused_own_bytes=c["reason"] is not None
        and refused_own_bytes(result if isinstance(result, dict) else None, digest),
    )


def _removal(r: JsonDict) -> RemovalFacts:
    return RemovalFacts(
        id=r["id"],
        ground=r["ground"],
        state=r["state"],
        filed_by=r["filed_by"] or "",
        filed_at=_at_known(r["filed_at"]),
        history=[HistoryEntry(_at_known(s["at"]), s["actor"], s["action"], s["note"] or None) for s in r["steps"]],
        proofs=[p["sha256"] for p in r["proofs"]],
    )
