"""The seal's snapshots on their way to the court: stored by hash, queued durably, thinned to the disk quota.

Every snapshot is written to the content-addressed :class:`~seal_agent.journal.snapshot_store.SnapshotStore` and
its hash is committed to the outbox's snapshot queue *before* it is published; the broker's PUBACK marks the queue entry
broker-acknowledged, and the court's receipt turns it into a "receipted" record (the file stays as a local copy until
thinning needs the space). A stored file that is neither queued nor receipted was stored by a process that died
before queueing it: it is queued when the spool is built (if the outbox refuses that write then, with the next
snapshot added), so such a crash never leaves evidence unsent.
:class:`SnapshotSpool` is the snapshot courier's :class:`~seal_agent.journal.courier.DeliveryQueue`.

Quota rule. Events are never dropped: they are small and they are the record. Snapshots are thinned, and the quota
always holds, on the disk too (it counts every file under the store's directory): when a new snapshot would take the
store over its quota, the store is thinned before the new one is written, down to ``THIN_TO_FRACTION`` of the quota
with the new one in it (so thinning, and its ``outbox_full`` event, happens once per ~10 % of the quota rather than per
snapshot): first the oldest snapshots the court has receipted (it holds them), then, only if that is not enough, the
oldest the broker acknowledged but the court has not receipted, and last the oldest never acknowledged (the newest
evidence, of what is going on now, is worth more than the oldest). The snapshot being added is never thinned. A
store found over its quota when the spool is built (the quota was lowered) is thinned the same way at once.

A snapshot is never deleted before the thinning is on record. Every thinning is committed first as ``outbox_full``
events (``part`` of ``parts``, at most :data:`MAX_LISTED` names each, so that every thinned snapshot is named; their
``unsent_lost`` name each thinned snapshot the court had not receipted, acknowledged by the broker or not, since nothing
says the court has it), each in one transaction with the outbox setting :data:`THINNING_SETTING` that holds the whole
thinning and how many of its parts are recorded; only then are the snapshots dropped from the queue, their files
deleted, and the setting cleared. A crash at any instant therefore leaves every thinned snapshot either on disk or named
lost: the next spool built on the outbox records the parts still missing, deletes what the thinning named and clears it
(as does the next snapshot added, if the outbox refused the events for a while). If the outbox refuses the events (a
full disk), nothing is deleted and the new snapshot is not stored (:class:`~seal_agent.errors.OutboxError`) —
unless the outbox's reserve can be released to record it (:mod:`seal_agent.journal.disk_room`).

A full disk (the outbox refuses an event for it, or a snapshot's write meets ``ENOSPC``) thins the store the same
way, in the same order and with the same record, to free :func:`~seal_agent.journal.disk_room.room_goal` bytes or
what there is (``outbox_full`` with ``cause`` ``disk_full``), gives back the outbox's write-ahead log
(:func:`~seal_agent.journal.disk_room.give_back_wal`); then the held events are committed. The quota in force
is at most what the disk can hold besides the outbox (:func:`~seal_agent.journal.disk_room.capped_quota`).

Any other way a queued snapshot leaves the queue unreceipted — its file gone, corrupt (its bytes, re-hashed on every
read, no longer match its name), over the broker's limit, unreadable — is signed first, one ``snapshot_lost`` each
(:mod:`seal_agent.journal.snapshot_losses`): nothing leaves the queue silently, and nothing corrupt is sent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

from seal_agent.errors import (
    EventLost,
    OutboxError,
    SnapshotCorrupt,
    SnapshotNotFound,
    SnapshotTooLarge,
    failure_reason,
)
from seal_agent.journal.disk_room import RESERVE_FILE, Reserve, capped_quota, is_disk_full, room_goal
from seal_agent.journal.outbox import SnapshotItem
from seal_agent.journal.recorder import EventRecorder
from seal_agent.journal.snapshot_losses import (
    LOST_MISSING,
    LOST_OVERSIZED,
    LOST_UNREADABLE,
    PASSING_ERRNOS,
    SnapshotLosses,
    loss_reason,
)
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_agent.journal.thinning import MAX_LISTED as MAX_LISTED
from seal_agent.journal.thinning import choose, reports
from seal_agent.journal.unkept import sign_unkept
from seal_protocol import EventType
from seal_protocol.topics import MAX_SNAPSHOT_BYTES

logger = logging.getLogger(__name__)

#: Thinning frees space down to this fraction of the quota.
THIN_TO_FRACTION = 0.9
#: Outbox setting: the outbox records sent (now: receipted) snapshots (absent in an outbox made before it did).
SENT_RECORDED_SETTING = "snapshot_sent_recorded"
#: Outbox setting: a thinning whose ``outbox_full`` events are (being) recorded but whose files may still be there,
#: as JSON ``{"payloads": [...], "recorded": n}``; empty when none is under way.
THINNING_SETTING = "snapshot_thinning"
#: Why a store is thinned (``outbox_full``'s ``cause``): its quota, or a full disk.
CAUSE_QUOTA, CAUSE_DISK_FULL = "quota", "disk_full"


class SnapshotSpool:
    """Stores, queues and thins snapshots; records each thinning through ``recorder`` (whose outbox holds the queue).
    Thread-safe; ``notify`` is called after each queued snapshot.

    Built at start: it completes a thinning a crash interrupted, queues what was stored but never queued, and thins a
    store over its quota. An outbox that refuses these writes (a full disk, :class:`~seal_agent.errors.OutboxError`)
    is logged, never fatal: the next snapshot added tries them again (and is not stored while they still fail). Only
    a store that cannot be used (its directory) fails the spool.
    """

    def __init__(self, store: SnapshotStore, recorder: EventRecorder) -> None:
        self.store = store
        self._recorder = recorder
        self._outbox = recorder.outbox
        self._losses = SnapshotLosses(store, recorder)
        self._lock = threading.Lock()
        self._inside = threading.local()  # this thread holds _lock: a refusal it meets makes no room from within
        self._reserve = Reserve(self._outbox.path.parent / RESERVE_FILE)
        store.quota_bytes = capped_quota(store.directory, store.quota_bytes, store.total_bytes())
        recorder.full_disk.on_full = self.make_room
        #: Called after a snapshot was queued (the snapshot courier's ``notify``).
        self.notify: Callable[[], None] = _nothing
        self._thinning_pending = True  # whether the outbox may hold an unfinished thinning
        self._unqueued_pending = True  # whether stored snapshots may be neither queued nor receipted
        try:
            self._finish_thinning()
        except (OutboxError, EventLost) as exc:
            logger.error("an interrupted thinning cannot be completed yet (%s); its snapshots are kept", exc)
        self._total = store.total_bytes()
        try:
            self._queue_unqueued()
        except OutboxError as exc:
            logger.error("stored snapshots cannot be queued yet (%s); tried again at the next snapshot", exc)
            return  # nor thinned: a thinning would take a stored snapshot not queued yet for one the court holds
        try:  # what a trigger's event named and a crash kept from being stored (before any thinning)
            sign_unkept(recorder, set(store.hashes()))
        except OutboxError as exc:
            logger.error("snapshots never stored cannot be signed lost yet (%s); tried again at the next start", exc)
        if self._total > store.quota_bytes:
            logger.warning(
                "the snapshot store holds %d bytes, over its quota of %d bytes: thinned now",
                self._total,
                store.quota_bytes,
            )
            try:
                self._thin(None, 0)
            except (OutboxError, EventLost) as exc:
                logger.error("the snapshot store stays over its quota: its thinning cannot be recorded (%s)", exc)

    @property
    def quota_bytes(self) -> int:
        return self.store.quota_bytes

    def add(self, jpeg: bytes) -> str:
        """Store ``jpeg``, queue it for the court, thin the store first if it would take it over its quota; return the
        hash.

        Room is made before the file is written, so the disk never holds more than the quota, not even between a
        write and its thinning. Snapshots are added one at a time (several threads add them, and nothing else
        writes to the store): a thinning never sees a stored snapshot that is not queued yet, and so never takes it
        for a sent one. A thinning is reported even if the write after it fails. A snapshot over
        :data:`MAX_SNAPSHOT_BYTES` (the broker would close the connection on it) raises :class:`SnapshotTooLarge`
        and is neither stored nor queued; the camera re-encodes frames to fit before they get here. A thinning whose
        ``outbox_full`` the outbox refuses (:class:`~seal_agent.errors.OutboxError`) deletes nothing, and the new
        snapshot is then not stored either.
        """
        if len(jpeg) > MAX_SNAPSHOT_BYTES:
            raise SnapshotTooLarge(
                f"a snapshot of {len(jpeg)} bytes is over the {MAX_SNAPSHOT_BYTES}-byte limit: not stored nor queued"
            )
        with self._locked():
            sha = self.store.address(jpeg)  # a non-JPEG is refused before anything is thinned
            self._finish_thinning()
            self._queue_unqueued()
            coming = 0 if sha in self.store else len(jpeg)
            if self._total + coming > self.store.quota_bytes:
                self._thin(sha, coming)
            try:
                self._store_and_queue(sha, jpeg)
            except OSError as exc:  # a full disk (ENOSPC, or the outbox's SQLITE_FULL): room is made, then again
                if not (is_disk_full(exc) and self._make_room(sha, coming)):
                    raise
                self._store_and_queue(sha, jpeg)
        self.notify()
        return sha

    def make_room(self) -> bool:
        """The outbox refused an event for a full disk (the recorder's ``on_full``): thin the store to free
        :func:`~seal_agent.journal.disk_room.room_goal` bytes or what there is, recorded as every thinning is (the
        events held before it are committed first), give back the outbox's write-ahead log, then commit the held
        events. Whether any room was made (thinned, the log's, the reserve).
        Never raises; from within the spool (its own thinning refused) it does nothing."""
        if getattr(self._inside, "on", False):
            return False
        with self._locked():
            try:
                self._finish_thinning()
                self._queue_unqueued()
                thinned = self._make_room(None, 0)  # then the log's room (its checkpoint may need what was thinned)
                if not (self._outbox.give_back_log() or thinned or self._reserve.release()):  # else the reserve
                    return False  # goes to the events (restored after the next thinning)
                self._recorder.retry_held()
            except (OutboxError, EventLost) as exc:
                logger.error("the disk is full and no room could be made for the outbox: %s", exc)
                return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self._inside.on = True
            try:
                yield
            finally:
                self._inside.on = False

    def _store_and_queue(self, sha: str, jpeg: bytes) -> None:
        """Write the snapshot and queue it (the lock is held). A file this call wrote is removed again if it cannot
        be queued: stored but not queued, it would count toward no total and be thinned as if the court had it."""
        created = self.store.write(jpeg)[1]
        try:
            if created or not self._outbox.was_receipted(sha):  # a frame the court holds is not sent again
                self._outbox.queue_snapshot(sha)
        except BaseException:
            if created:
                self.store.delete(sha)
            raise
        if created:
            self._total += len(jpeg)

    def depth(self) -> int:
        """Snapshots waiting for the court's receipt."""
        return self._outbox.snapshot_depth()

    # -- DeliveryQueue ----------------------------------------------------------------------------------------

    def pending(self, *, after: int, limit: int) -> list[SnapshotItem]:
        items = []
        for queued in self._outbox.pending_snapshots(after=after, limit=limit):
            try:
                jpeg = self.store.get(queued.sha)
            except (SnapshotNotFound, SnapshotCorrupt) as exc:
                self._lose_if_still_queued(queued.sha, *loss_reason(exc))
                continue
            except OSError as exc:
                if exc.errno in PASSING_ERRNOS:
                    raise  # the process's trouble, not the file's: the courier tries again
                self._lose_if_still_queued(queued.sha, LOST_UNREADABLE, failure_reason(exc))
                continue
            if len(jpeg) > MAX_SNAPSHOT_BYTES:  # queued by an older agent: the broker would drop the connection
                detail = f"{len(jpeg)} bytes, over the {MAX_SNAPSHOT_BYTES}-byte limit the broker accepts"
                self._lose_if_still_queued(queued.sha, LOST_OVERSIZED, detail)
                continue
            items.append(SnapshotItem(queued.qid, queued.sha, jpeg))
        return items

    def broker_acknowledged(self, keys: Collection[int]) -> None:
        self._outbox.snapshots_broker_acknowledged(keys)

    def court_receipted(self, hashes: Collection[str]) -> list[int]:
        return self._outbox.snapshots_court_receipted(hashes)

    # -- losses -----------------------------------------------------------------------------------------------

    def _lose_if_still_queued(self, sha: str, reason: str, detail: str) -> None:
        """The courier found ``sha`` cannot be sent: sign its loss, unless it left the queue meanwhile (a thinning
        deletes a file only once its snapshot left the queue, a receipt removes it) or its file is fine after all.
        An outbox that refuses the event (a full disk) keeps the snapshot queued, and it is not sent meanwhile."""
        with self._locked():
            if sha not in self._outbox.queued_snapshots():
                return
            if reason == LOST_MISSING and sha in self.store:
                return  # written again meanwhile (the same bytes added): it is sent at the next pass
            try:
                self._losses.lose([(sha, reason, detail)])
                self._total = self.store.total_bytes()
            except OutboxError as exc:
                logger.error(
                    "snapshot %s cannot be sent (%s: %s) and its loss cannot be recorded yet (%s): kept "
                    "queued, tried again at the next pass",
                    sha,
                    reason,
                    detail,
                    exc,
                )

    # -- quota ------------------------------------------------------------------------------------------------

    def _thin(self, newest: str | None, coming: int) -> None:
        """Make room for ``coming`` more bytes of ``newest`` (the spool's lock is held; ``newest`` is not thinned if
        it is stored already): choose, record, then delete."""
        quota = self.store.quota_bytes
        target = max(0, int(quota * THIN_TO_FRACTION) - coming)
        queued = self._outbox.queued_snapshots()
        never_acknowledged = self._outbox.queued_snapshots(broker_acknowledged=False)
        spared = set() if newest is None else {newest}
        passes = (queued | spared, never_acknowledged | spared, spared)
        chosen, left = choose(self.store.entries(), self.store.total_bytes(), passes, target, quota - coming)
        if any(chosen):
            self._record_and_delete(chosen, left + coming, CAUSE_QUOTA)

    def _make_room(self, newest: str | None, coming: int) -> bool:
        """The disk is full: thin to free ``room_goal`` bytes, or what there is (``newest``, of ``coming`` bytes
        still to write, spared); whether any snapshot was thinned (the lock is held)."""
        total = self.store.total_bytes()
        target = max(0, total - room_goal(self.store.quota_bytes))
        queued = self._outbox.queued_snapshots()
        never_acknowledged = self._outbox.queued_snapshots(broker_acknowledged=False)
        spared = set() if newest is None else {newest}
        passes = (queued | spared, never_acknowledged | spared, spared)
        chosen, left = choose(self.store.entries(), total, passes, target, target)
        if not any(chosen):
            logger.error("the disk is full and the snapshot store holds nothing to thin (%d bytes)", total)
            return False
        self._record_and_delete(chosen, left + coming, CAUSE_DISK_FULL)
        return True

    def _record_and_delete(self, chosen: list[list[str]], stored: int, cause: str) -> None:
        quota = self.store.quota_bytes
        receipted, lost = chosen[0], chosen[1] + chosen[2]
        logger.warning(
            "%s: thinning %d receipted and %d unreceipted snapshot(s) (%d of them never acknowledged by the broker)",
            f"snapshot quota of {quota} bytes reached" if cause == CAUSE_QUOTA else "the disk is full",
            len(receipted),
            len(lost),
            len(chosen[2]),
        )
        self._carry_out(reports(quota, stored, receipted + lost, set(lost), cause), recorded=0)

    def _carry_out(self, payloads: list[dict[str, Any]], *, recorded: int) -> None:
        """Record the thinning's ``outbox_full`` events from part ``recorded + 1`` on, each with the thinning's
        record in its transaction; then drop the snapshots they name from the queue, delete them, clear the record."""
        for part in range(recorded + 1, len(payloads) + 1):
            record = json.dumps({"payloads": payloads, "recorded": part}, separators=(",", ":"))
            self._thinning_pending = True
            try:
                self._recorder.record(EventType.OUTBOX_FULL, payloads[part - 1], settings={THINNING_SETTING: record})
            except OutboxError as exc:  # a full disk: the reserve's room records it (nothing is deleted before)
                if not (is_disk_full(exc) and self._reserve.release()):
                    raise
                self._recorder.record(EventType.OUTBOX_FULL, payloads[part - 1], settings={THINNING_SETTING: record})
        gone = [sha for payload in payloads for sha in payload["snapshots"]]
        try:
            self._outbox.forget_snapshots(
                gone
            )  # first: the courier, reading the queue meanwhile, finds no missing file
        except OutboxError as exc:  # a full disk: the files (named gone, on record) make the room to forget them
            if not is_disk_full(exc):
                raise
            self.store.delete_all(gone)  # the courier's loss of a missing file waits for the lock: forgotten by then
            self._outbox.forget_snapshots(gone)
        self.store.delete_all(gone)
        self._outbox.set_setting(THINNING_SETTING, "")
        self._thinning_pending = False
        self._total = self.store.total_bytes()
        self._reserve.restore()

    def _finish_thinning(self) -> None:
        """Complete a thinning whose record is in the outbox (a crash or a refused event cut it short)."""
        if not self._thinning_pending:
            return
        text = self._outbox.setting(THINNING_SETTING)
        if not text:
            self._thinning_pending = False
            return
        record = json.loads(text)
        payloads, recorded = record["payloads"], int(record["recorded"])
        logger.warning(
            "completing a thinning that was cut short (%d of its %d outbox_full event(s) recorded)",
            recorded,
            len(payloads),
        )
        self._carry_out(payloads, recorded=recorded)

    def _queue_unqueued(self) -> None:
        """Queue stored snapshots that are neither queued nor receipted (the process died between storing and
        queueing, or an older agent recorded none), and forget queued ones whose file is gone; once, unless the
        outbox refuses it (:class:`~seal_agent.errors.OutboxError`: tried again with the next snapshot)."""
        if not self._unqueued_pending:
            return
        queued = self._outbox.queued_snapshots()
        stored = self.store.hashes()
        missing = queued.difference(stored)
        if missing:  # a card fault, a hand; or thinned by an older agent after the broker took them
            logger.error("%d queued snapshot(s) have no file any more: each loss signed, then dropped", len(missing))
            self._losses.lose([(sha, LOST_MISSING, "the stored file is gone") for sha in sorted(missing)])
            self._total = self.store.total_bytes()
        self._losses.prune(queued)
        known = queued | self._outbox.receipted_snapshots()
        unqueued = [sha for sha in stored if sha not in known]
        for sha in unqueued:
            self._outbox.queue_snapshot(sha)
        if self._outbox.setting(SENT_RECORDED_SETTING) is None:
            # Stored before sent snapshots were recorded: sent then meant at most that the broker took them.
            self._outbox.set_setting(SENT_RECORDED_SETTING, "1")
            if unqueued:
                logger.warning("%d snapshot(s) stored by an older agent queued for the court's receipt", len(unqueued))
        elif unqueued:
            logger.warning("%d stored snapshot(s) were never queued for the court (a crash?): queued", len(unqueued))
        self._unqueued_pending = False


def _nothing() -> None:
    pass
