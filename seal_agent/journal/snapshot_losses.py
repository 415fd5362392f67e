"""Queued snapshots that can never be delivered, forgotten only once a signed ``snapshot_lost`` names each one.

A snapshot the spool queued has been signed as stored and queued (a trigger's ``snapshot_taken``). If it can never
reach the court — its file is gone (a card fault, fsck, a hand), its bytes no longer hash to its name (the court would
never receipt them), it is over the size limit the broker accepts (queued by an older agent), or it cannot be read —
it leaves the queue only after a ``snapshot_lost`` naming it and the reason is committed. Its file, if any, is moved
out of the store (``corrupt/`` or ``oversized/`` beside the buckets: evidence of the fault, still counted by the
quota), never deleted. Thinning is not a loss of this kind: it has its own ``outbox_full`` events.

Order and idempotency: each event is committed in one transaction with the outbox setting :data:`LOSSES_SETTING`
naming its snapshot; then the file is set aside, the snapshot leaves the queue, and the setting drops it. A crash
between leaves the snapshot queued and named by the setting: found again (at start, or by the courier), it leaves the
queue without a second event. A setting naming a snapshot no longer queued is pruned at start.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Sequence

from seal_agent.errors import EventLost, SnapshotCorrupt, SnapshotNotFound
from seal_agent.journal.recorder import EventRecorder
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_protocol import EventType

logger = logging.getLogger(__name__)

#: Outbox setting: snapshots whose ``snapshot_lost`` is committed but which may still be queued (a crash came
#: between), as a JSON list; they leave the queue without a second event.
LOSSES_SETTING = "snapshot_losses"

#: Snapshots over the size limit found in the queue are moved here (under the store's directory; the quota counts it).
OVERSIZED_DIR = "oversized"
#: Snapshots whose bytes no longer hash to their name, or that cannot be read, are moved here (as above).
CORRUPT_DIR = "corrupt"

#: Why a queued snapshot was lost (``snapshot_lost``'s ``reason``).
LOST_MISSING = "missing"
LOST_CORRUPT = "corrupt"
LOST_OVERSIZED = "oversized"
LOST_UNREADABLE = "unreadable"
#: Characters of the detail a ``snapshot_lost`` carries (the log has all of it).
LOST_DETAIL_CHARS = 300
#: Read errors that are the process's or the system's for now, not the file's: never a reason to lose a snapshot.
PASSING_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR, errno.EAGAIN})


def loss_reason(exc: SnapshotNotFound | SnapshotCorrupt) -> tuple[str, str]:
    """``(reason, detail)`` of a snapshot the store could not give back."""
    if isinstance(exc, SnapshotCorrupt):
        return LOST_CORRUPT, f"its bytes hash to {exc.actual}"
    return LOST_MISSING, "the stored file is gone"


class SnapshotLosses:
    """Signs and carries out the losses of queued snapshots (the caller, the spool, holds its lock)."""

    def __init__(self, store: SnapshotStore, recorder: EventRecorder) -> None:
        self.store = store
        self._recorder = recorder
        self._outbox = recorder.outbox

    def lose(self, losses: Sequence[tuple[str, str, str]]) -> None:
        """Forget queued snapshots that can never be delivered (``(sha, reason, detail)``), each only once a signed
        ``snapshot_lost`` names it. :class:`~seal_agent.errors.OutboxError` (a full disk): the snapshot stays queued
        and is tried again. A file that cannot be set aside keeps its snapshot queued (not sent; set aside at the
        next pass, without a second event)."""
        for sha, reason, detail in losses:
            recorded = self.recorded()
            folder = OVERSIZED_DIR if reason == LOST_OVERSIZED else CORRUPT_DIR
            if sha not in recorded:
                self._sign(sha, reason, detail, folder, recorded)
            else:
                logger.warning("snapshot %s: its loss was signed before (a restart came between): not again", sha)
            if not self._set_aside(sha, folder):
                continue
            self._outbox.forget_snapshots([sha])
            self._outbox.set_setting(LOSSES_SETTING, _names(self.recorded() - {sha}))
            logger.warning("lost snapshot %s dropped from the queue", sha)

    def prune(self, queued: set[str]) -> None:
        """Drop from the setting the snapshots no longer queued (a crash came after one left the queue)."""
        recorded = self.recorded()
        if recorded - queued:
            self._outbox.set_setting(LOSSES_SETTING, _names(recorded & queued))

    def recorded(self) -> set[str]:
        """Snapshots whose ``snapshot_lost`` is committed but which may still be queued (a crash)."""
        text = self._outbox.setting(LOSSES_SETTING)
        return set(json.loads(text)) if text else set()

    def _sign(self, sha: str, reason: str, detail: str, folder: str, recorded: set[str]) -> None:
        kept = f"{folder}/{self.store.path(sha).name}" if sha in self.store else None
        payload = {"snapshot": sha, "reason": reason, "detail": detail[:LOST_DETAIL_CHARS], "kept": kept}
        names = _names(recorded | {sha})
        try:
            event = self._recorder.record(EventType.SNAPSHOT_LOST, payload, settings={LOSSES_SETTING: names})
            seq: int | str = event.seq
        except EventLost as lost:  # never for so small an event: its event_lost stands in its place
            seq = f"{lost.seq} (an event_lost in its place)"
            self._outbox.set_setting(LOSSES_SETTING, names)
        logger.error(
            "queued snapshot %s can never be delivered (%s: %s; its file %s): snapshot_lost seq=%s signed",
            sha,
            reason,
            detail,
            f"kept as {kept}" if kept else "is gone",
            seq,
        )

    def _set_aside(self, sha: str, folder: str) -> bool:
        """Move the file of a lost snapshot, if any, to ``folder`` out of the store (the quota still counts it);
        whether it is out of the store now."""
        try:
            target = self.store.set_aside(sha, folder)
        except FileNotFoundError:
            return True
        except OSError as exc:
            logger.error("the file of lost snapshot %s cannot be set aside (%s): it stays queued, not sent", sha, exc)
            return False
        logger.warning("%s is kept outside the queue but still counts toward the quota", target)
        return True


def _names(shas: set[str]) -> str:
    return json.dumps(sorted(shas), separators=(",", ":"))
