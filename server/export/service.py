"""Exporting a case's evidence: one service function, called by the CLI and the API alike.

1. The records are gathered and the checkpoint that covers them chosen (or signed), with its RFC 3161 time stamp
   (kept, or asked of the TSA now; a TSA that does not answer leaves the bundle without one, and says so in the log).
2. Every file but the report is staged in a zip of its own, with a signed manifest, and ``seal-verify`` checks it.
3. The report is rendered from the records and that verdict; the bundle is the staged files plus the report, under
   a new signed manifest, written to a temporary file beside ``target``.
4. The file is flushed to disk, renamed to ``target`` and its directory flushed; only then is the export recorded (an
   audit entry naming the checkpoint, a row of ``evidence_exports`` so later exports carry a consistency proof from
   it) in a short transaction of its own, and committed. A file ``target`` named before (an earlier bundle, recorded)
   is kept aside beside it until then (:func:`~server.core.files.place_until_recorded`). A failure on the way leaves
   no partial bundle and no record: a bundle whose record cannot be committed is removed again and the earlier file
   put back, so no record names a file that is not in place and no recorded bundle is lost. A crash (a power cut)
   between the rename and the commit can leave a bundle at ``target`` that the court has no record of, and the earlier
   one beside it as ``.<name>.<random>.kept``: ``seal-verify`` tells whether a bundle is genuine; export again.

Before anything is written, both evidence stores must answer (:meth:`~server.core.blobs.ObjectBackend.check`: a
directory that exists and can be read, a bucket that answers): a store that is away — an unmounted disk — refuses the
export (:class:`~server.export.errors.ExportFailed`), rather than sign a bundle that calls every picture lost. Only a
picture missing from a store that answers is listed ``lost``.

Both zips are written within seal-verify's size bounds (:mod:`server.export.limits`): a case too large for one bundle
is refused (:class:`~server.export.errors.BundleTooLarge`, 409) with the advice to export shorter time ranges.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from sqlalchemy.orm import Session

from seal_protocol import parse_ts
from seal_verify import verify_bundle
from seal_verify.timestamp import TimestampVerdict, verify_timestamp
from server.audit.service import Actor, record_audit
from server.config import Settings
from server.core.base import utc_now
from server.core.db import make_session_factory
from server.core.files import place_until_recorded
from server.core.whole_numbers import whole_numbers
from server.errors import ContentStoreError, NotFound
from server.evidence.checkpoints import LogKey
from server.evidence.errors import TimestampFailed
from server.evidence.models import LogCheckpoint
from server.evidence.snapshot_files import SnapshotStore
from server.evidence.timestamps import stamp_checkpoint, timestamp_of
from server.evidence.tsa import TsaClient
from server.export.bundle import CHUNK_BYTES, BundleWriter, Progress, each_json_line, json_lines, readme
from server.export.errors import ExportFailed, StoreAway
from server.export.facts import report_facts
from server.export.gather import ALL_TIME, CaseEvidence, JsonDict, TimeRange, case_leaves, gather, ts
from server.export.limits import VERIFIERS, BundleLimits, OverBound, too_large
from server.export.models import EvidenceExport
from server.export.proofs import LogPart, covering_checkpoint, log_part
from server.export.report import CheckpointFacts, render_report
from server.export.report_sections import CONTACT_SHEET_MAX
from server.export.slots import EXPORTS
from server.export.store_files import proof_files, snapshot_files
from server.removal.proofs import ProofStore
from server.seals.cases import find_case
from server.stores import Stores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    case_no: str
    events: int
    snapshots: int
    checkpoint_size: int
    manifest_sha256: str
    verified: bool  # seal-verify's verdict on the staged files


@dataclass(frozen=True)
class ExportConfig:
    """What an export needs of the server's configuration."""

    snapshots: SnapshotStore
    proofs: ProofStore
    offline_after: timedelta
    tsa: TsaClient | None = None
    #: The size bounds the bundle is written within: seal-verify's (lower ones for a smaller bundle, never higher).
    limits: BundleLimits = VERIFIERS

    @classmethod
    def from_settings(cls, settings: Settings, *, stores: Stores | None = None) -> ExportConfig:
        """The export's configuration; ``stores``: the server's, or (a command) built from ``settings``."""
        stores = stores or Stores.from_settings(settings)
        return cls(
            stores.snapshots,
            stores.proofs,
            timedelta(seconds=settings.offline_after_s),
            TsaClient.from_settings(settings.evidence),
        )


@dataclass
class _Staged:
    evidence: CaseEvidence
    proofs: LogPart
    stamp: tuple[bytes, bytes] | None
    head: JsonDict


def export_case(
    session: Session,
    *,
    case_no: str,
    target: Path,
    log_key: LogKey,
    config: ExportConfig,
    actor: Actor | None,
    exported_by: str,
    time_range: TimeRange = ALL_TIME,
    progress: Progress | None = None,
    wait: bool = True,
) -> ExportResult:
    """Write the bundle of ``case_no`` to ``target`` and record the export (commits). One export at a time in the
    process (:mod:`server.export.slots`): while another runs, this one waits for it, or (not ``wait``) is refused at
    once (:class:`~server.export.errors.ExportsBusy`)."""
    waiting = (lambda: progress.phase("waiting for the export running now")) if progress is not None else None
    with EXPORTS.hold(wait=wait, waiting=waiting):
        return _export(session, case_no, target, log_key, config, actor, exported_by, time_range, progress)


def _export(
    session: Session,
    case_no: str,
    target: Path,
    log_key: LogKey,
    config: ExportConfig,
    actor: Actor | None,
    exported_by: str,
    time_range: TimeRange,
    progress: Progress | None,
) -> ExportResult:
    if progress is not None:
        progress.phase("gathering the case's records and their proofs")
    staged = _prepare(session, case_no, log_key, config, exported_by, time_range)
    session.commit()  # no transaction while the bundle is staged, verified and rendered (SQLite: its write lock)
    _check_stores(config)
    if target.is_dir():
        raise ExportFailed(f"cannot write {target}: it is a directory; give the zip file's name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage, temp = _temp_beside(target, ".stage"), _temp_beside(target, ".part")
    except OSError as exc:
        raise ExportFailed(f"cannot write {target}: {exc.strerror or exc}") from None
    try:
        manifest, verdict_ok = _write(staged, stage, temp, log_key, config, progress)
        digest = hashlib.sha256(manifest).hexdigest()
        placed = place_until_recorded(temp, target)  # a bundle recorded before at target kept aside till recorded
    except OverBound as exc:
        events = staged.evidence.events
        refusal = too_large(exc, len(events), ts(events.first_received), ts(events.last_received))
        logger.warning("case %s not exported: %s", staged.evidence.case_no, exc)
        raise refusal from None
    except ContentStoreError as exc:  # (an OSError too: before the disk's)
        raise StoreAway(f"the evidence store cannot be read: {exc}: nothing exported, nothing recorded") from None
    except OSError as exc:
        raise ExportFailed(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        stage.unlink(missing_ok=True)
        temp.unlink(missing_ok=True)
    try:
        _record(session, staged, actor=actor, exported_by=exported_by, digest=digest)
        session.commit()
    except BaseException:
        session.rollback()
        logger.error("case %s: the export to %s could not be recorded; the bundle is removed", case_no, target)
        placed.undo()  # not recorded, so not exported: the path holds what it held before (the earlier bundle, or none)
        raise
    placed.keep()
    evidence, size = staged.evidence, staged.proofs.checkpoint.tree_size
    present = sum(1 for s in evidence.snapshots if s["present"])
    logger.info(
        "case %s exported to %s: %d events, %d snapshots, checkpoint %d%s",
        evidence.case_no,
        target,
        len(evidence.events),
        present,
        size,
        "" if verdict_ok else " — its own verification FAILED (see the report)",
    )
    return ExportResult(target, evidence.case_no, len(evidence.events), present, size, digest, verdict_ok)


def _prepare(
    session: Session, case_no: str, log_key: LogKey, config: ExportConfig, exported_by: str, time_range: TimeRange
) -> _Staged:
    case = find_case(session, case_no=case_no)
    if case is None:
        raise NotFound(f"unknown case {case_no!r}")
    # The checkpoint first, then the records below it: on PostgreSQL each read sees what is committed before it, so
    # records read first could miss an event the ingest stores meanwhile that a later checkpoint covers.
    checkpoint = covering_checkpoint(session, log_key, case_leaves(session, case.case_no))
    evidence = gather(session, case, time_range, below=checkpoint.tree_size)
    proofs = log_part(session, checkpoint, evidence.leaf_indices())
    stamp = _timestamp(session, checkpoint, config.tsa)
    head = {
        "case_no": case.case_no,
        "checkpoint_size": checkpoint.tree_size,
        "exported_at": ts(utc_now()),
        "exported_by": exported_by,
        "log_key": log_key.verifier(),
        "log_origin": log_key.origin,
        "range": time_range.as_json(),
    }
    return _Staged(evidence, proofs, stamp, head)


def _check_stores(config: ExportConfig) -> None:
    """Raise :class:`ExportFailed` unless the stores of snapshots and removal proofs answer now."""
    for what, store in (("snapshots", config.snapshots), ("removal proofs", config.proofs)):
        try:
            store.backend.check()
        except ContentStoreError as exc:
            raise StoreAway(
                f"the store of {what} cannot be used ({exc}): nothing exported, nothing recorded — a bundle made now "
                "would call every picture lost; mount or repair the store and export again"
            ) from None


def _timestamp(session: Session, checkpoint: LogCheckpoint, tsa: TsaClient | None) -> tuple[bytes, bytes] | None:
    """The checkpoint's token and chain: the kept ones, or (with a TSA) asked for now; ``None`` without."""
    kept = timestamp_of(session, checkpoint)
    if kept is not None or tsa is None:
        return kept
    session.commit()  # no transaction open while the TSA is asked (SQLite: it would hold the write lock)
    try:
        return stamp_checkpoint(make_session_factory(session.get_bind()), checkpoint.tree_size, tsa)  # type: ignore[arg-type]
    except TimestampFailed as exc:
        logger.warning("the export's checkpoint %d has no time stamp: %s", checkpoint.tree_size, exc)
        return None


def _temp_beside(target: Path, suffix: str) -> Path:
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(handle)
    return Path(name)


def _write(
    staged: _Staged, stage: Path, temp: Path, log_key: LogKey, config: ExportConfig, progress: Progress | None
) -> tuple[bytes, bool]:
    """Stage the files, verify them, render the report; write the bundle. Its manifest, and the staged verdict."""
    evidence, verifier = staged.evidence, staged.head["log_key"]
    step = progress.phase if progress is not None else (lambda _what: None)
    step(f"staging {len(evidence.events)} events and their files")
    with BundleWriter(stage, progress=progress, compress=False, limits=config.limits) as writer:
        _write_evidence(writer, evidence, staged, config)
        writer.finish(staged.head, key=log_key.get(), key_name=log_key.origin)
    step("verifying the staged files (seal-verify)")
    verdict = verify_bundle(stage, log_key=verifier, tsa_roots_pem=_tsa_roots(config.tsa), staged=True)
    checkpoint = staged.proofs.checkpoint
    stamp_verdict = _stamp_verdict(staged.stamp, checkpoint.note.encode("utf-8"))
    cp = CheckpointFacts(log_key.origin, checkpoint.tree_size, checkpoint.root_hash.hex(), verifier)
    with zipfile.ZipFile(stage) as staged_zip, BundleWriter(temp, limits=config.limits) as writer:
        step("reading the report's facts (the events streamed again)")
        pictures = _pictures(staged_zip, evidence)
        facts = report_facts(
            evidence,
            head=staged.head,
            checkpoint=cp,
            stamp=stamp_verdict,
            verdict=verdict,
            pictures=pictures,
            offline_after=config.offline_after,
        )
        step("rendering the report")
        report = render_report(facts)
        step("writing the bundle")
        for name in staged_zip.namelist():
            if name not in ("manifest.json", "manifest.sig"):
                with staged_zip.open(name) as member:
                    writer.add_chunks(name, iter(partial(member.read, CHUNK_BYTES), b""))
        writer.add("report.pdf", report)
        return writer.finish(staged.head, key=log_key.get(), key_name=log_key.origin), verdict.ok


def _pictures(staged: zipfile.ZipFile, evidence: CaseEvidence) -> dict[str, bytes]:
    """The snapshots the staged zip holds, by SHA-256: the bytes of those the report draws (the first
    :data:`CONTACT_SHEET_MAX` received), ``b""`` for the others (named by their path, their bytes not read)."""
    names = (name for name in staged.namelist() if name.startswith("snapshots/"))
    held = {name.removeprefix("snapshots/").removesuffix(".jpg") for name in names}
    drawn = sorted((s for s in evidence.snapshots if s["sha256"] in held), key=lambda s: parse_ts(s["received_at"]))
    shown = {s["sha256"] for s in drawn[:CONTACT_SHEET_MAX]}
    return {sha: staged.read(f"snapshots/{sha}.jpg") if sha in shown else b"" for sha in held}


def _tsa_roots(tsa: TsaClient | None) -> bytes | None:
    """The TSA roots the court pins (``[evidence] tsa_ca_file``), so that the report's time stamp is checked against
    them, not shown unanchored; None without (or if the file cannot be read: the stamp then shows unanchored)."""
    if tsa is None or tsa.roots_file is None:
        return None
    try:
        return tsa.roots_file.read_bytes()
    except OSError as exc:
        logger.warning("cannot read [evidence] tsa_ca_file %s: %s", tsa.roots_file, exc.strerror)
        return None


def _stamp_verdict(stamp: tuple[bytes, bytes] | None, note: bytes) -> TimestampVerdict | None:
    return None if stamp is None else verify_timestamp(stamp[0], note, stamp[1])


def _write_evidence(writer: BundleWriter, evidence: CaseEvidence, staged: _Staged, config: ExportConfig) -> None:
    proofs, verifier = staged.proofs, staged.head["log_key"]
    writer.add("README.txt", readme(evidence.case_no, verifier))
    writer.add("case.json", json_lines([evidence.case])[:-1])
    for device_id, record in evidence.seals.items():
        writer.add(f"seals/{device_id}.json", json_lines([record])[:-1])
    writer.add_lines("events.jsonl", (line.raw + b"\n" for line in evidence.events))
    writer.add_lines("events-meta.jsonl", each_json_line(line.meta() for line in evidence.events))
    writer.add_files("snapshots", snapshot_files(evidence, config.snapshots))
    writer.add_lines("snapshots.jsonl", each_json_line(evidence.snapshots))
    for sha, data in sorted(evidence.refused.items()):  # the bytes the seal signed for, that the court refused
        writer.add(f"refused/{sha}.jpg", data)
    writer.add_lines("quarantine.jsonl", each_json_line(evidence.quarantine))
    # whole numbers: an alarm stored before server.core.whole_numbers may say 60.0 (a bundle holds integers only)
    writer.add_lines("alarms.jsonl", each_json_line(whole_numbers(a, what="an alarm") for a in evidence.alarms))
    writer.add_lines("commands.jsonl", each_json_line(evidence.commands))
    writer.add_files("removal proofs", proof_files(evidence, config.proofs))
    writer.add_lines("removal.jsonl", each_json_line(evidence.removal))
    writer.add_lines("audit.jsonl", (line.record + b"\n" for line in evidence.audit))
    writer.add_lines("audit-meta.jsonl", each_json_line(line.meta() for line in evidence.audit))
    writer.add("log/checkpoint.txt", proofs.checkpoint.note.encode("utf-8"))
    writer.add_lines("log/proofs.jsonl", each_json_line(proofs.proofs()))
    writer.add_lines("log/consistency.jsonl", each_json_line(proofs.consistency))
    writer.add("log/key.txt", (verifier + "\n").encode("ascii"))
    if staged.stamp is not None:
        writer.add("log/checkpoint.tsr", staged.stamp[0])
        writer.add("log/tsa-chain.pem", staged.stamp[1])


def _record(session: Session, staged: _Staged, *, actor: Actor | None, exported_by: str, digest: str) -> None:
    evidence, size = staged.evidence, staged.proofs.checkpoint.tree_size
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
    record_audit(
        session,
        actor=actor,
        action="evidence.export",
        target=evidence.case_no,
        case_no=evidence.case_no,
        details=details,
    )
