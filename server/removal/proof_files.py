"""A filing's proof files in the store: written inside the filing's transaction, after every check has passed
(:func:`store_proofs`), and removed again when the filing is not committed (:func:`discard_unfiled`).

The store is content-addressed: two requests, of two cases, may hold the same bytes under one name. A file is
removed only if this filing wrote it and no request refers to it — read under the lock every filing that stores
that file holds until its commit: on SQLite the database's write lock (each writing transaction begins
``IMMEDIATE``), on PostgreSQL a transaction-scoped advisory lock on the file's hash (:func:`lock_proofs`). So a
filing of the same bytes either committed before the check (its row is seen: the file stays) or stores the file
after the removal (it is written again).

A process killed between writing a file and the commit leaves the file, referenced by nothing: docs/removal.md
("Proof files") says what is left and how to find it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.removal.errors import ProofStorageFailed
from server.removal.models import RemovalProof
from server.removal.proofs import CheckedProof, ProofStore

logger = logging.getLogger(__name__)

#: The first key of the PostgreSQL advisory locks of proof files ("proo"); the second is from the file's hash.
PROOF_LOCK_CLASS = 0x7072_6F6F
_LOCK = text("SELECT pg_advisory_xact_lock(CAST(:class_key AS integer), CAST(:key AS integer))")


def lock_proofs(session: Session, sha256s: Iterable[str]) -> None:
    """Hold, until the transaction ends, the lock of each file named (on PostgreSQL an advisory lock per hash,
    taken in order so that two filings never wait for each other in a circle; on SQLite the transaction holds the
    database's write lock already)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for sha256 in sorted(set(sha256s)):
        session.execute(_LOCK, {"class_key": PROOF_LOCK_CLASS, "key": int(sha256[:8], 16) - 2**31})


def store_proofs(
    session: Session, store: ProofStore, proofs: Iterable[CheckedProof], *, case_no: str, written: list[CheckedProof]
) -> None:
    """Write the (checked) proof files to the store, each under its lock (:func:`lock_proofs`); a file already there
    is not written again. Each file this call writes is appended to ``written`` as soon as it is there, so that the
    caller can remove them if the filing is not committed. :class:`ProofStorageFailed` if one cannot be written."""
    unique = {p.sha256: p for p in proofs}
    lock_proofs(session, unique)
    for proof in unique.values():
        try:
            if store.put_proof(proof):
                written.append(proof)
        except OSError as exc:
            logger.error("cannot store proof %s of case %s: %s", proof.sha256, case_no, exc)
            # The client is told no more than that: the store's address and the disk's paths are the court's.
            raise ProofStorageFailed(f"the proof file {proof.filename} cannot be stored now: try again later") from exc


def discard_unfiled(session: Session, store: ProofStore, written: Iterable[CheckedProof], *, case_no: str) -> None:
    """Remove the files a filing wrote and did not commit, unless a request refers to one (the same bytes filed by
    another). Call it after the filing's rollback; it commits its own transaction. A file that cannot be checked or
    removed (the database or the store failing) is left, and logged: it is referenced by nothing, and the filing's
    own error is what the caller reports."""
    proofs = {p.sha256: p for p in written}
    if not proofs:
        return
    try:
        lock_proofs(session, proofs)
        query = select(RemovalProof.sha256).where(RemovalProof.sha256.in_(list(proofs))).distinct()
        referenced = set(session.scalars(query))
        for sha256, proof in sorted(proofs.items()):
            if sha256 in referenced:
                continue
            store.remove_proof(sha256, proof.media_type)
            logger.info("removed proof file %s of a filing of case %s that was not filed", sha256, case_no)
        session.commit()
    except Exception:  # the filing's own error is the one to report: this one is logged, the file left
        session.rollback()
        logger.exception(
            "cannot remove the proof files %s of a filing of case %s that was not filed: they are left, referenced "
            "by no request",
            ", ".join(sorted(proofs)),
            case_no,
        )
