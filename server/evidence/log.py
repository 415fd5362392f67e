"""The server's append-only Merkle log over the stored events, kept in the database.

Every stored event is a leaf, ``SHA-256(0x00 || events.raw)``, appended in the transaction that stores the event
(:func:`append_events`). Beside the leaves, the hash of every complete subtree is stored (``log_nodes``): appending
reads the O(log n) peaks of the tree, and a proof or a root is O(log n) lookups (:mod:`server.evidence.merkle`).

One writer appends at a time: on PostgreSQL a transaction-scoped advisory lock serialises the ingest workers (held
from the append to the commit); on SQLite the write lock the transaction already holds does. The caller flushes its
other rows before the append, so a worker holding the log's lock never waits for rows another worker holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from sqlalchemy import Table, and_, func, insert, or_, select, text
from sqlalchemy.orm import Session

from server.core.base import utc_now
from server.evidence import merkle
from server.evidence.checkpoints import Checkpoint, LogKey, sign_checkpoint
from server.evidence.errors import ProofError
from server.evidence.models import Event, LogCheckpoint, LogLeaf, LogNode

#: The key of the PostgreSQL advisory lock of the log's writer ("seal-log").
LOG_LOCK_KEY = 0x7365_616C_2D6C_6F67 & 0x7FFF_FFFF_FFFF_FFFF


def lock_log(session: Session) -> None:
    """Hold the log's writer lock until the transaction ends (PostgreSQL; SQLite's write lock already does)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOG_LOCK_KEY})


def tree_size(session: Session) -> int:
    last = session.scalar(select(func.max(LogLeaf.leaf_index)))
    return 0 if last is None else last + 1


def read_nodes(session: Session, wanted: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The stored hashes of the complete subtrees ``wanted`` (level 0: the leaves); all must exist."""
    wanted = set(wanted)
    found: dict[merkle.Node, bytes] = {}
    leaves = [index for level, index in wanted if level == 0]
    if leaves:
        rows = session.execute(select(LogLeaf.leaf_index, LogLeaf.leaf_hash).where(LogLeaf.leaf_index.in_(leaves)))
        found.update(((0, index), h) for index, h in rows)
    inner = [and_(LogNode.level == level, LogNode.node_index == index) for level, index in wanted if level > 0]
    if inner:
        nodes = session.execute(select(LogNode.level, LogNode.node_index, LogNode.hash).where(or_(*inner)))
        found.update(((level, index), h) for level, index, h in nodes)
    missing = wanted - found.keys()
    if missing:
        raise RuntimeError(f"the Merkle log lacks the nodes {sorted(missing)[:5]}: its tables are damaged")
    return found


def append_events(session: Session, events: Sequence[Event]) -> None:
    """Append ``events`` (flushed: they have ids) as leaves, in order, with the subtrees they complete."""
    if not events:
        return
    lock_log(session)
    size = tree_size(session)
    peaks = read_nodes(session, merkle.peaks(size))
    frontier = [peaks[node] for node in merkle.peaks(size)]
    _, made = merkle.append(size, frontier, [merkle.leaf_hash(event.raw) for event in events])
    leaves = [
        {"leaf_index": index, "event_id": event.id, "leaf_hash": h}
        for ((_, index), h), event in zip((m for m in made if m[0][0] == 0), events, strict=True)
    ]
    nodes = [{"level": level, "node_index": index, "hash": h} for (level, index), h in made if level > 0]
    # The tables, not the mapped classes: a Core executemany, without the ORM's bulk-insert bookkeeping per row.
    session.execute(insert(cast(Table, LogLeaf.__table__)), leaves)
    if nodes:
        session.execute(insert(cast(Table, LogNode.__table__)), nodes)


def root_hash(session: Session, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    return _hashes(session, [(0, size)])[0]


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    return _hashes(session, merkle.inclusion_ranges(index, size))


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    if new > tree_size(session):
        raise ProofError(f"the log has fewer than {new} leaves")
    return _hashes(session, merkle.consistency_ranges(old, new))


def _hashes(session: Session, ranges: Sequence[merkle.Range]) -> list[bytes]:
    nodes = read_nodes(session, merkle.nodes_of(ranges))
    return [merkle.range_hash(start, end, nodes) for start, end in ranges]


def leaf_of(session: Session, event: Event) -> LogLeaf | None:
    return session.scalars(select(LogLeaf).where(LogLeaf.event_id == event.id)).one_or_none()


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    return session.scalars(select(LogCheckpoint).order_by(LogCheckpoint.tree_size.desc()).limit(1)).one_or_none()


def make_checkpoint(session: Session, key: LogKey) -> LogCheckpoint | None:
    """Sign and add a checkpoint of the log as it is, unless the latest one has its size already (or it is empty)."""
    size = tree_size(session)
    latest = latest_checkpoint(session)
    if size == 0 or (latest is not None and latest.tree_size >= size):
        return None
    root = root_hash(session, size)
    note = sign_checkpoint(Checkpoint(key.origin, size, root), key.get())
    row = LogCheckpoint(tree_size=size, root_hash=root, note=note, made_at=utc_now())
    session.add(row)
    return row
