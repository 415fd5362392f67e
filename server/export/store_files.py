"""The files of a bundle read from the evidence stores as they are written: the snapshots the case holds and the
removal requests' proofs, each read (and its hash checked) only when it is added."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from server.errors import ContentMismatch
from server.evidence.snapshot_files import SnapshotStore
from server.export.gather import CaseEvidence, JsonDict
from server.export.pictures import LOST
from server.removal.proofs import EXTENSIONS, ProofStore

logger = logging.getLogger(__name__)

#: Reads a file for the bundle: its bytes, or ``None`` to leave it out.
Reader = Callable[[], bytes | None]


def snapshot_files(evidence: CaseEvidence, store: SnapshotStore) -> list[tuple[str, Reader]]:
    """The held snapshots' files, each read (and its hash checked) when it is added; a row whose file is gone, or
    holds other bytes than its hash, is listed ``present: false`` with the row's ``received_at`` and ``size``: the
    court received it and lost it (``absent_reason: lost``), which ``seal-verify`` fails (and it is logged; a
    mismatch is counted too)."""
    found: list[tuple[str, Reader]] = []
    for record in evidence.snapshots:
        if record["present"]:
            found.append((f"snapshots/{record['sha256']}.jpg", partial(_snapshot_bytes, store, record, evidence)))
    return found


def _snapshot_bytes(store: SnapshotStore, record: JsonDict, evidence: CaseEvidence) -> bytes | None:
    data = _checked_read(lambda: store.read(record["sha256"]), f"snapshot {record['sha256']}", evidence)
    if data is None:
        record["present"] = False
        record["absent_reason"] = LOST
    return data


def proof_files(evidence: CaseEvidence, store: ProofStore) -> list[tuple[str, Reader]]:
    proofs: dict[str, list[JsonDict]] = {}  # a zip path -> the records of that file (one file, maybe many requests)
    for request in evidence.removal:
        for proof in request["proofs"]:
            proofs.setdefault(f"removal/{proof['sha256']}{EXTENSIONS[proof['media_type']][0]}", []).append(proof)
    return [(path, partial(_proof_bytes, store, records, evidence)) for path, records in sorted(proofs.items())]


def _proof_bytes(store: ProofStore, records: list[JsonDict], evidence: CaseEvidence) -> bytes | None:
    sha256, media_type = records[0]["sha256"], records[0]["media_type"]
    data = _checked_read(lambda: store.read_proof(sha256, media_type), f"removal proof {sha256}", evidence)
    for proof in records:
        proof["present"] = data is not None
    return data


def _checked_read(read: Callable[[], bytes | None], what: str, evidence: CaseEvidence) -> bytes | None:
    """What ``read`` gives, or ``None`` (logged) if the file is missing or holds other bytes than its hash (the
    store has logged and counted that): the bundle never carries bytes other than the ones recorded."""
    try:
        data = read()
    except ContentMismatch:
        logger.error("%s of case %s holds other bytes than recorded: left out of the bundle", what, evidence.case_no)
        return None
    if data is None:
        logger.warning("%s of case %s is recorded but its file is missing", what, evidence.case_no)
    return data
