"""The log part of a bundle: the checkpoint every proof leads to, an inclusion proof per leaf, and consistency
proofs from the checkpoints a verifier may have kept (those earlier exports led to, and each day's last)."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.core.court_clock import COURT_TIME
from server.evidence import log
from server.evidence.checkpoints import LogKey
from server.evidence.models import LogCheckpoint
from server.export.errors import NothingLogged
from server.export.event_source import reading
from server.export.gather import JsonDict
from server.export.models import EvidenceExport

#: China Standard Time: a day's last checkpoint is the last one before midnight here.


#: Leaves whose inclusion proofs are computed at a time (the nodes they share read once per batch).
PROOF_BATCH = 256


@dataclass
class LogPart:
    """The checkpoint, the leaves to prove (``log/proofs.jsonl``, computed a batch at a time as they are written:
    :meth:`proofs`) and the consistency proofs."""

    checkpoint: LogCheckpoint
    leaf_indices: Sequence[int]
    consistency: list[JsonDict]
    session: Session

    def proofs(self) -> Iterator[JsonDict]:
        """One line of ``log/proofs.jsonl`` per leaf, in the order of :attr:`leaf_indices`."""
        size = self.checkpoint.tree_size
        with reading(self.session) as reader:  # no write lock held while log/proofs.jsonl is written
            for start in range(0, len(self.leaf_indices), PROOF_BATCH):
                batch = self.leaf_indices[start : start + PROOF_BATCH]
                proofs = log.inclusion_proofs(reader, batch, size)
                for i in batch:
                    yield {"hashes": [b64(h) for h in proofs[i]], "leaf_index": i, "tree_size": size}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def covering_checkpoint(session: Session, key: LogKey, leaf_indices: Sequence[int]) -> LogCheckpoint:
    """The latest checkpoint if it covers every leaf of ``leaf_indices``, else a fresh one of the whole log (made
    and committed here; if the checkpointer made one of that size meanwhile, that one)."""
    needed = max(leaf_indices, default=-1) + 1
    latest = log.latest_checkpoint(session)
    if latest is not None and latest.tree_size >= needed:
        return latest
    try:
        with session.begin_nested():
            log.make_checkpoint(session, key)
    except IntegrityError:  # the checkpointer signed the same size first
        pass
    session.commit()
    latest = log.latest_checkpoint(session)
    if latest is None or latest.tree_size < needed:
        if needed == 0:
            raise NothingLogged("the log has no leaf yet: no checkpoint can be signed for the bundle")
        raise RuntimeError(f"no checkpoint covers leaf {needed - 1}: the log's tables are damaged")
    return latest


def log_part(session: Session, checkpoint: LogCheckpoint, leaf_indices: Sequence[int]) -> LogPart:
    size = checkpoint.tree_size
    consistency = []
    for old in _kept_checkpoints(session, size):
        hashes = log.consistency_proof(session, old.tree_size, size)
        consistency.append(
            {
                "hashes": [b64(h) for h in hashes],
                "new_size": size,
                "old_root": b64(old.root_hash),
                "old_size": old.tree_size,
            }
        )
    return LogPart(checkpoint, leaf_indices, consistency, session)


def _kept_checkpoints(session: Session, size: int) -> list[LogCheckpoint]:
    """The checkpoints smaller than ``size`` a verifier may hold: those earlier exports led to, each day's last."""
    exported = select(EvidenceExport.checkpoint_size).where(EvidenceExport.checkpoint_size < size).distinct()
    rows = session.execute(
        select(LogCheckpoint.tree_size, LogCheckpoint.made_at)
        .where(LogCheckpoint.tree_size < size)
        .order_by(LogCheckpoint.tree_size)
    )
    last_of_day: dict[date, int] = {}
    for tree_size, made_at in rows:
        last_of_day[made_at.astimezone(COURT_TIME).date()] = tree_size  # ascending: the last one stays
    sizes = set(last_of_day.values()) | set(session.scalars(exported))
    if not sizes:
        return []
    found = session.scalars(select(LogCheckpoint).where(LogCheckpoint.tree_size.in_(sorted(sizes))))
    return sorted(found, key=lambda row: row.tree_size)
