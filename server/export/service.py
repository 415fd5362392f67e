"""Exporting a case's evidence: one service function, called by the CLI and the API alike.

The bundle is written to a temporary file beside ``target``; the export is then recorded (an audit entry naming the
checkpoint, a row of ``evidence_exports`` so later exports carry a consistency proof from it) and committed, and
only then is the file renamed to ``target``. A failure on the way leaves no partial bundle and no record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from server.audit.service import Actor, record_audit
from server.core.base import utc_now
from server.errors import NotFound
from server.evidence.checkpoints import LogKey
from server.evidence.snapshot_files import SnapshotStore
from server.export.bundle import BundleWriter, Progress, json_lines, readme
from server.export.errors import ExportFailed
from server.export.gather import ALL_TIME, CaseEvidence, TimeRange, gather, ts
from server.export.models import EvidenceExport
from server.export.proofs import LogPart, covering_checkpoint, log_part
from server.removal.proofs import EXTENSIONS, ProofStore
from server.seals.cases import find_case

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    case_no: str
    events: int
    snapshots: int
    checkpoint_size: int
    manifest_sha256: str


@dataclass(frozen=True)
class EvidenceFiles:
    """Where the server keeps the files a bundle copies."""

    snapshot_dir: Path
    proof_dir: Path


def export_case(
    session: Session,
    *,
    case_no: str,
    target: Path,
    log_key: LogKey,
    files: EvidenceFiles,
    actor: Actor | None,
    exported_by: str,
    time_range: TimeRange = ALL_TIME,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the bundle of ``case_no`` to ``target`` and record the export (commits)."""
    case = find_case(session, case_no=case_no)
    if case is None:
        raise NotFound(f"unknown case {case_no!r}")
    evidence = gather(session, case, time_range)
    leaves = [line.leaf_index for line in evidence.events]
    checkpoint = covering_checkpoint(session, log_key, leaves)
    proofs = log_part(session, checkpoint, leaves)
    verifier = log_key.verifier()
    head = {
        "case_no": case.case_no,
        "checkpoint_size": checkpoint.tree_size,
        "exported_at": ts(utc_now()),
        "exported_by": exported_by,
        "log_key": verifier,
        "log_origin": log_key.origin,
        "range": time_range.as_json(),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    temp = Path(temp_name)
    try:
        with BundleWriter(temp, progress=progress) as writer:
            _write_evidence(writer, evidence, proofs, files, verifier=verifier)
            manifest = writer.finish(head, key=log_key.get(), key_name=log_key.origin)
        digest = hashlib.sha256(manifest).hexdigest()
        _record(session, evidence, checkpoint.tree_size, actor=actor, exported_by=exported_by, digest=digest)
        session.commit()
        os.replace(temp, target)
    except OSError as exc:
        raise ExportFailed(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    present = sum(1 for s in evidence.snapshots if s["present"])
    logger.info(
        "case %s exported to %s: %d events, %d snapshots, checkpoint %d",
        case.case_no,
        target,
        len(evidence.events),
        present,
        checkpoint.tree_size,
    )
    return ExportResult(target, case.case_no, len(evidence.events), present, checkpoint.tree_size, digest)


def _write_evidence(
    writer: BundleWriter, evidence: CaseEvidence, proofs: LogPart, files: EvidenceFiles, *, verifier: str
) -> None:
    writer.add("README.txt", readme(evidence.case_no, verifier))
    writer.add("case.json", json_lines([evidence.case])[:-1])
    for device_id, record in evidence.seals.items():
        writer.add(f"seals/{device_id}.json", json_lines([record])[:-1])
    writer.add("events.jsonl", b"".join(line.raw + b"\n" for line in evidence.events))
    writer.add("events-meta.jsonl", json_lines(line.meta() for line in evidence.events))
    writer.add_files("snapshots", _snapshot_files(evidence, SnapshotStore(files.snapshot_dir)))
    writer.add("snapshots.jsonl", json_lines(evidence.snapshots))
    writer.add("alarms.jsonl", json_lines(evidence.alarms))
    writer.add("commands.jsonl", json_lines(evidence.commands))
    writer.add_files("removal proofs", _proof_files(evidence, ProofStore(files.proof_dir)))
    writer.add("removal.jsonl", json_lines(evidence.removal))
    writer.add("log/checkpoint.txt", proofs.checkpoint.note.encode("utf-8"))
    writer.add("log/proofs.jsonl", json_lines(proofs.proofs))
    writer.add("log/consistency.jsonl", json_lines(proofs.consistency))
    writer.add("log/key.txt", (verifier + "\n").encode("ascii"))


def _snapshot_files(evidence: CaseEvidence, store: SnapshotStore) -> list[tuple[str, Path]]:
    """The held snapshots' files; a row whose file is gone is listed ``present: false`` (and logged)."""
    found = []
    for record in evidence.snapshots:
        if not record["present"]:
            continue
        path = store.path_for(record["sha256"])
        if path.is_file():
            found.append((f"snapshots/{record['sha256']}.jpg", path))
        else:
            logger.warning("snapshot %s of case %s is recorded but its file is missing", path, evidence.case_no)
            record.update(present=False, received_at=None, size=None)
    return found


def _proof_files(evidence: CaseEvidence, store: ProofStore) -> list[tuple[str, Path]]:
    found: dict[str, Path] = {}
    for request in evidence.removal:
        for proof in request["proofs"]:
            path = store.proof_path(proof["sha256"], proof["media_type"])
            proof["present"] = path.is_file()
            if proof["present"]:
                found[f"removal/{proof['sha256']}{EXTENSIONS[proof['media_type']][0]}"] = path
            else:
                logger.warning("removal proof %s of case %s is missing", path, evidence.case_no)
    return sorted(found.items())


def _record(
    session: Session, evidence: CaseEvidence, size: int, *, actor: Actor | None, exported_by: str, digest: str
) -> None:
    session.add(
        EvidenceExport(
            case_no=evidence.case_no,
            checkpoint_size=size,
            exported_at=utc_now(),
            exported_by=exported_by[:64],
            events=len(evidence.events),
            manifest_sha256=digest,
        )
    )
    details = {
        "checkpoint_size": size,
        "events": len(evidence.events),
        "exported_by": exported_by,
        "manifest_sha256": digest,
    }
    record_audit(session, actor=actor, action="evidence.export", target=evidence.case_no, details=details)
