"""Snapshots of a batch, checked and written to their store before the batch's transaction begins.

A store on another machine (an S3-compatible bucket) may take its timeouts to answer, or not answer at all; written
inside the transaction, the picture would hold the database meanwhile — on SQLite its one write lock, for which every
other writer (the web, the other workers, the liveness check) waits, and fails after the busy timeout. So the bytes
are checked before it (:func:`~server.ingest.checks.snapshot_refusal`, in :func:`~server.ingest.checks.prepare`)
and written here (:func:`write_snapshots`), and the transaction only adds the rows. An object written for a batch
that then fails is harmless: its name is its hash, and the seal sends the picture again.

Only pictures of registered seals that the court does not hold yet are written here (read on a read-only session,
which takes no lock): a redelivery costs no request to the store, and a stranger's picture no object. A picture
the court holds already (for this case or another) was written before its row was committed: it counts as written,
and the batch writes nothing inside its transaction. Nor is a picture written that the seal's budget of pictures no
stored event names refuses (:mod:`.unnamed_budget`): it is refused here, ``unnamed_snapshots``, and the batch checks
the budget again once the seal's row is locked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from seal_protocol import Envelope, MessageKind, ParsedTopic
from server.core.base import utc_now
from server.core.db import READ_ONLY, SessionFactory
from server.evidence.models import Snapshot
from server.evidence.snapshot_files import SnapshotStore
from server.ingest.checks import Prepared
from server.ingest.results import Message, Reason, Rejected
from server.ingest.snapshot_filing import pictures_to_file
from server.ingest.unnamed_budget import Picture, over_budget, unnamed_refusal
from server.seals.models import Seal

logger = logging.getLogger(__name__)


def write_snapshots(
    session_factory: SessionFactory,
    store: SnapshotStore,
    messages: Sequence[Message],
    prepared: list[Prepared],
    written: set[str],
    unnamed_budget: int | None = None,
) -> list[Prepared]:
    """Write the checked snapshots among ``messages`` that the court does not hold yet, adding their hashes to
    ``written``; a picture that cannot be written is refused (``storage_error``: not receipted, sent again), and so
    is one past its seal's ``unnamed_budget`` (``unnamed_snapshots``; None: no budget)."""
    wanted = {
        i: p.checked
        for i, p in enumerate(prepared)
        if isinstance(p.checked, ParsedTopic) and p.checked.kind is MessageKind.SNAPSHOT
    }
    if not wanted:
        return prepared
    shas = {_sha(topic) for topic in wanted.values()} - written
    try:
        known, held = _known(session_factory, {topic.device_id for topic in wanted.values()}, shas)
        over = _over_budget(session_factory, messages, prepared, wanted, written | held, known, unnamed_budget)
    except SQLAlchemyError as exc:  # the batch's own transaction will say what the database has
        logger.warning("snapshots are written inside the transaction: the database could not be read (%s)", exc)
        return prepared
    written |= held  # in the store already: written before its row was committed
    result = list(prepared)
    for i, topic in wanted.items():
        sha = _sha(topic)
        if sha in written or topic.device_id not in known:
            continue
        if (topic.device_id, sha) in over:
            assert unnamed_budget is not None
            result[i] = Prepared(unnamed_refusal(sha, unnamed_budget))
            continue
        try:
            store.put(sha, messages[i].payload)
        except OSError as exc:  # this picture alone waits: quarantined unreceipted, the seal sends it again
            # (a disk's error, or the bucket's: unreachable, refusing us, or holding other bytes under this name)
            logger.error("cannot store snapshot %s of %s: %s", sha, topic.device_id, exc)
            refusal = Rejected(Reason.STORAGE_ERROR, f"storage error: cannot store the snapshot: {exc}")
            result[i] = Prepared(refusal)
            continue
        written.add(sha)
    return result


def _sha(topic: ParsedTopic) -> str:
    assert topic.sha256 is not None  # a snapshot topic names its hash
    return topic.sha256


def _known(session_factory: SessionFactory, device_ids: set[str], shas: set[str]) -> tuple[set[str], set[str]]:
    """The registered seals among ``device_ids``, and the hashes among ``shas`` of pictures the court holds."""
    with session_factory() as session:
        session.connection(execution_options=READ_ONLY)  # before the first statement: SQLite's BEGIN DEFERRED
        known = set(session.scalars(select(Seal.device_id).where(Seal.device_id.in_(device_ids))))
        held = set(session.scalars(select(Snapshot.sha256).where(Snapshot.sha256.in_(shas)))) if shas else set()
    return known, held


def _over_budget(
    session_factory: SessionFactory,
    messages: Sequence[Message],
    prepared: Sequence[Prepared],
    wanted: Mapping[int, ParsedTopic],
    written: set[str],
    known: set[str],
    unnamed_budget: int | None,
) -> set[Picture]:
    """The pictures to write that their seal's budget refuses: not in the store yet, named by no event of their seal
    in the batch, and past the budget as the committed rows have it (no lock: the batch decides again)."""
    if unnamed_budget is None:
        return set()
    in_batch = {
        (p.checked.device_id, sha)
        for p in prepared
        if isinstance(p.checked, Envelope)
        for sha in pictures_to_file(p.checked.payload)
    }
    sizes = {
        (topic.device_id, _sha(topic)): len(messages[i].payload)
        for i, topic in wanted.items()
        if topic.device_id in known and _sha(topic) not in written and (topic.device_id, _sha(topic)) not in in_batch
    }
    if not sizes:
        return set()
    with session_factory() as session:
        session.connection(execution_options=READ_ONLY)
        return over_budget(session, sizes, unnamed_budget, now=utc_now())
