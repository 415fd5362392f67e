"""The server's append-only Merkle log over the stored events and the audit entries, kept in the database.

Every stored event is a leaf, ``SHA-256(0x00 || events.raw)``, appended in the transaction that stores the event
(:func:`append_events`); every audit entry is a leaf, ``SHA-256(0x00 || audit_log.record)`` (the entry's canonical
JSON with ``"kind": "audit"``), appended when the transaction that records the entry commits
(:func:`append_audit_entries`, installed into :mod:`server.audit.service` on import, which :mod:`server` does).
:func:`audit_leaves_of_case` gives a case's entries with their leaves, for the export. Beside the leaves, the hash of
every complete subtree is stored (``log_nodes``): appending reads the O(log n) peaks of the tree, and a proof or a
root is O(log n) lookups (:mod:`server.evidence.merkle`).

One writer appends at a time: on PostgreSQL a transaction-scoped advisory lock serialises the ingest workers (held
from the append to the commit); on SQLite the write lock the transaction already holds does. The caller flushes its
other rows before the append, so a worker holding the log's lock never waits for rows another worker holds; an
audit entry's leaf is appended at its transaction's commit, after its other rows are flushed, for the same reason.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from server.audit.models import AuditEntry
from server.audit.service import set_leaf_appender
from server.core.base import utc_now
from server.core.bulk_insert import BulkInsert
from server.core.driver_sql import DriverSelect
from server.evidence import merkle
from server.evidence.checkpoints import Checkpoint, LogKey, sign_checkpoint
from server.evidence.errors import CheckpointRefused, ProofError
from server.evidence.models import Event, LogCheckpoint, LogLeaf, LogNode
from server.evidence.signed_record import Signed, SignedRecord, record_of

#: The key of the PostgreSQL advisory lock of the log's writer ("seal-log").
LOG_LOCK_KEY = 0x7365_616C_2D6C_6F67 & 0x7FFF_FFFF_FFFF_FFFF

logger = logging.getLogger(__name__)


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
    inner: dict[int, list[int]] = {}
    for level, index in wanted:
        if level > 0:
            inner.setdefault(level, []).append(index)
    for level, indices in inner.items():  # one statement per level, its indices one expanding parameter: a single
        # entry in SQLAlchemy's cache of compiled statements, not one per count of (level, index) pairs
        query = select(LogNode.node_index, LogNode.hash).where(LogNode.level == level, LogNode.node_index.in_(indices))
        found.update(((level, index), h) for index, h in session.execute(query))
    missing = wanted - found.keys()
    if missing:
        raise RuntimeError(f"the Merkle log lacks the nodes {sorted(missing)[:5]}: its tables are damaged")
    return found


#: A leaf to append: ``("event", events.id, events.raw)`` or ``("audit", audit_log.id, audit_log.record)``.
Leaf = tuple[str, int, bytes]
_ID_COLUMN = {"event": "event_id", "audit": "audit_id"}


@dataclass(frozen=True, slots=True)
class Frontier:
    """The log's size and the hashes of its :func:`merkle.peaks` after a transaction that committed: what a writer
    expects to find at its next append. It is a hint, never trusted: :func:`append_leaves` reads the stored peaks in
    the query that finds the log's size, and appends from those. The cache only names which nodes to read with the
    size (one query, not two), and a cached peak that differs from the stored one is logged (the database lost its
    last commits under a running process: a failover to an asynchronous replica, a restored backup; other writers
    may have brought the log back to ``size`` with other leaves, even with the same last one)."""

    size: int
    hashes: tuple[bytes, ...]
    last: bytes  # the hash of the leaf at size - 1


# The tables, not the mapped classes: without the ORM's bulk-insert bookkeeping per row.
_INSERT_LEAVES = BulkInsert(cast(Table, LogLeaf.__table__), ["leaf_index", "event_id", "audit_id", "leaf_hash"])
_INSERT_NODES = BulkInsert(cast(Table, LogNode.__table__), ["level", "node_index", "hash"])
_NEWEST = select(LogLeaf.leaf_index, LogLeaf.leaf_hash).order_by(LogLeaf.leaf_index.desc()).limit(1)


@functools.cache
def _newest_with_nodes(count: int) -> DriverSelect:
    """The newest leaf as a node of level 0 (the log's size, and its last peak when the size is odd), then the
    stored nodes ``(:l<i>, :n<i>)`` for ``i < count``: one statement per number of nodes, its text made once (the
    ingest's hot path; a Core construct would be built and keyed at every batch)."""
    wanted = " OR ".join(f"(level = :l{i} AND node_index = :n{i})" for i in range(count))
    return DriverSelect(
        text(
            "SELECT 0 AS level, leaf_index AS node_index, leaf_hash AS hash FROM "
            "(SELECT leaf_index, leaf_hash FROM log_leaves ORDER BY leaf_index DESC LIMIT 1) AS newest "
            f"UNION ALL SELECT level, node_index, hash FROM log_nodes WHERE {wanted}"
        )
    )


def _stored_frontier(session: Session, known: Frontier | None) -> tuple[int, list[bytes]]:
    """The log's size and the stored hashes of its peaks, read after the log's lock is held (on PostgreSQL, READ
    COMMITTED: each statement sees every commit made before it, so nothing appended before the lock was taken is
    missed). With ``known``, the peaks of its size are read with the newest leaf in one query; if the log has
    another size now (another writer appended), a second query reads the peaks of that size. Never from the cache."""
    inner = [peak for peak in merkle.peaks(known.size) if peak[0] > 0] if known is not None else []
    if inner:
        params = {f"{name}{i}": value for i, node in enumerate(inner) for name, value in zip("ln", node, strict=True)}
        rows = [(level, index, bytes(h)) for level, index, h in _newest_with_nodes(len(inner)).rows(session, params)]
    else:
        rows = [(0, index, h) for index, h in session.execute(_NEWEST)]
    newest = next(((index, h) for level, index, h in rows if level == 0), None)
    size = 0 if newest is None else newest[0] + 1
    if known is None or size != known.size:
        peaks = read_nodes(session, merkle.peaks(size))
        return size, [peaks[node] for node in merkle.peaks(size)]
    found: dict[merkle.Node, bytes] = {(level, index): h for level, index, h in rows if level > 0}
    if newest is not None and size & 1:
        found[(0, newest[0])] = newest[1]
    wanted = merkle.peaks(size)
    missing = set(wanted) - found.keys()
    if missing:
        raise RuntimeError(f"the Merkle log lacks the nodes {sorted(missing)[:5]}: its tables are damaged")
    stored = [found[node] for node in wanted]
    if tuple(stored) != known.hashes:
        logger.warning(
            "the Merkle log's stored peaks at size %d differ from those this process appended to: the database "
            "lost its last commits (restore, failover) and other leaves took their places; the stored ones are used",
            size,
        )
    return size, stored


def append_leaves(session: Session, new: Sequence[Leaf], known: Frontier | None = None) -> Frontier | None:
    """Append ``new`` (rows flushed: they have ids) as leaves, in order, with the subtrees they complete.

    ``known``: the frontier this writer got from its last append whose transaction committed, a hint of the size
    to expect (:class:`Frontier`): the peaks appended from are always the stored ones. Returns the frontier after
    the append (valid once this transaction commits), or None if nothing was appended."""
    if not new:
        return None
    lock_log(session)
    size, frontier = _stored_frontier(session, known)
    hashes = [merkle.leaf_hash(data) for _, _, data in new]
    after, made = merkle.append(size, frontier, hashes)
    leaves = [
        {"leaf_index": index, "event_id": None, "audit_id": None, _ID_COLUMN[kind]: row_id, "leaf_hash": h}
        for ((_, index), h), (kind, row_id, _) in zip((m for m in made if m[0][0] == 0), new, strict=True)
    ]
    nodes = [{"level": level, "node_index": index, "hash": h} for (level, index), h in made if level > 0]
    _INSERT_LEAVES.execute(session, leaves)
    _INSERT_NODES.execute(session, nodes)
    return Frontier(size + len(new), tuple(after), hashes[-1])


def append_events(session: Session, events: Sequence[Event], known: Frontier | None = None) -> Frontier | None:
    """Append ``events`` (flushed: they have ids) as leaves, in order (the ingest, after its other rows); see
    :func:`append_leaves` for ``known`` and what is returned."""
    return append_leaves(session, [("event", event.id, event.raw) for event in events], known)


def append_audit_entries(session: Session, entries: Sequence[AuditEntry]) -> None:
    """Append ``entries`` (flushed) as leaves, in order; :mod:`server.audit.service` calls it at the commit."""
    append_leaves(session, [("audit", entry.id, entry.record) for entry in entries])


set_leaf_appender(append_audit_entries)


def root_hash(session: Session, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    return _hashes(session, [(0, size)])[0]


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    return _hashes(session, merkle.inclusion_ranges(index, size))


def inclusion_proofs(session: Session, indices: Iterable[int], size: int) -> dict[int, list[bytes]]:
    """The inclusion proofs of many leaves in the tree of ``size`` leaves, reading the nodes they share once (an
    export proves every event of a case)."""
    ranges = {index: merkle.inclusion_ranges(index, size) for index in indices}
    wanted = merkle.nodes_of(r for proof in ranges.values() for r in proof)
    nodes: dict[merkle.Node, bytes] = {}
    for level in {level for level, _ in wanted}:
        at_level = sorted(index for lvl, index in wanted if lvl == level)
        for start in range(0, len(at_level), 500):
            nodes.update(read_nodes(session, ((level, index) for index in at_level[start : start + 500])))
    hashes: dict[merkle.Range, bytes] = {}
    for start, end in {r for proof in ranges.values() for r in proof}:
        hashes[(start, end)] = merkle.range_hash(start, end, nodes)
    return {index: [hashes[r] for r in proof] for index, proof in ranges.items()}


def consistency_proof(session: Session, old: int, new: int) -> list[bytes]:
    if new > tree_size(session):
        raise ProofError(f"the log has fewer than {new} leaves")
    return _hashes(session, merkle.consistency_ranges(old, new))


def _hashes(session: Session, ranges: Sequence[merkle.Range]) -> list[bytes]:
    nodes = read_nodes(session, merkle.nodes_of(ranges))
    return [merkle.range_hash(start, end, nodes) for start, end in ranges]


def leaf_of(session: Session, event: Event) -> LogLeaf | None:
    return session.scalars(select(LogLeaf).where(LogLeaf.event_id == event.id)).one_or_none()


def leaf_of_audit(session: Session, entry: AuditEntry) -> LogLeaf | None:
    return session.scalars(select(LogLeaf).where(LogLeaf.audit_id == entry.id)).one_or_none()


def audit_leaves_of_case(session: Session, case_no: str) -> list[tuple[AuditEntry, LogLeaf]]:
    """The audit entries of the case ``case_no`` (``audit_log.case_no``) with their leaves, by leaf index.

    Each entry's leaf bytes are ``entry.record`` exactly; ``leaf.leaf_hash`` is ``SHA-256(0x00 || entry.record)``.
    """
    query = (
        select(AuditEntry, LogLeaf)
        .join(LogLeaf, LogLeaf.audit_id == AuditEntry.id)
        .where(AuditEntry.case_no == case_no)
        .order_by(LogLeaf.leaf_index)
    )
    return [(entry, leaf) for entry, leaf in session.execute(query)]


def latest_checkpoint(session: Session) -> LogCheckpoint | None:
    return session.scalars(select(LogCheckpoint).order_by(LogCheckpoint.tree_size.desc()).limit(1)).one_or_none()


def make_checkpoint(session: Session, key: LogKey) -> LogCheckpoint | None:
    """Sign and add a checkpoint of the log as it is, unless the latest one has its size already (or it is empty).

    Never one inconsistent with a checkpoint the key signed before: the tree is checked against the record kept
    outside the database (:mod:`server.evidence.signed_record`), which is written before the row is added (the
    caller commits it, and publishes the note only then). Raises :class:`CheckpointRefused` (logged here, and kept
    for the health check) when the tree contradicts the record. A newer checkpoint row than the record (the first
    run, a court upgraded from before the record, another server's) is recorded when it is consistent with it."""
    if key.path is None:
        key.get()  # raises LogKeyUnavailable
        raise AssertionError("a log key without a file")
    record = record_of(key.path)
    # The transaction first, then the record's lock, as an export does (it read before): on SQLite, BEGIN IMMEDIATE
    # takes the database's write lock, and the other order could leave each waiting for the other.
    size = tree_size(session)
    try:
        with record.held():
            # Read with the record held: a signer of this machine that recorded a bigger size committed its leaves
            # before, and READ COMMITTED (PostgreSQL) shows them to these statements.
            size = tree_size(session)
            latest = latest_checkpoint(session)
            _check_against_record(session, key, record, size, latest)
            if size == 0 or (latest is not None and latest.tree_size >= size):
                record.refused = None
                return None
            root = root_hash(session, size)
            note = sign_checkpoint(Checkpoint(key.origin, size, root), key.get())
            record.write(Signed(key.origin, size, root, note))  # durable before the note can be published
    except CheckpointRefused as exc:
        record.refused = exc.reason
        logger.error("the log's key signs no checkpoint of the %d leaves in the database: %s", size, exc.reason)
        raise
    record.refused = None
    row = LogCheckpoint(tree_size=size, root_hash=root, note=note, made_at=utc_now())
    session.add(row)
    return row


def _check_against_record(
    session: Session, key: LogKey, record: SignedRecord, size: int, latest: LogCheckpoint | None
) -> None:
    """Raise :class:`CheckpointRefused` unless the stored tree (``size`` leaves) extends the recorded checkpoint;
    then record ``latest`` if it is newer than the record (and of this origin, and the tree's)."""
    kept = record.read()
    if kept is not None:
        where = f"the checkpoint of {kept.tree_size} leaves recorded in {record.path}"
        if kept.origin != key.origin:
            recorded = json.dumps(kept.origin, ensure_ascii=False)  # as TOML writes it
            raise CheckpointRefused(
                "other_log",
                f"{where} is of the log {kept.origin!r}, not of [evidence] log_origin {key.origin!r}: if this is the "
                f"same log (a renamed host, a rewritten server.toml), set [evidence] log_origin = {recorded} "
                "again and restart; only a new log (the old one lost for good) takes a new origin, and it needs a "
                "key file of its own (docs/evidence.md, 'When the log has lost checkpoints it signed')",
            )
        if size < kept.tree_size:
            raise CheckpointRefused(
                "smaller",
                f"the database's log has {size} leaves, fewer than {where}: the database lost commits (a restored "
                "backup, a failover); see docs/evidence.md, 'When the log has lost checkpoints it signed'",
            )
        if root_hash(session, kept.tree_size) != kept.root_hash:
            raise CheckpointRefused(
                "forked",
                f"the database's log has another root at size {kept.tree_size} than {where}: it lost commits and "
                "other leaves took their places; see docs/evidence.md, 'When the log has lost checkpoints it signed'",
            )
    if latest is None or (kept is not None and latest.tree_size <= kept.tree_size):
        return
    if not latest.note.startswith(key.origin + "\n"):
        return  # signed under another origin: not this log's
    if latest.tree_size > size or root_hash(session, latest.tree_size) != latest.root_hash:
        raise CheckpointRefused(
            "damaged",
            f"the stored checkpoint of {latest.tree_size} leaves is not of the stored tree: the log's tables "
            "are damaged",
        )
    record.write(Signed(key.origin, latest.tree_size, latest.root_hash, latest.note))
    logger.info("checkpoint of %d leaves recorded in %s", latest.tree_size, record.path)
