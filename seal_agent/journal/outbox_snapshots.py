"""The outbox's queue of snapshots waiting for the court's receipt (:class:`~seal_agent.journal.outbox.Outbox`).

A snapshot's hash is queued (its bytes live in the content-addressed snapshot store), marked broker-acknowledged on
its PUBACK, and leaves the queue only when a receipt names it; it is then recorded as receipted.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seal_agent.errors import OutboxError
from seal_agent.journal.outbox_items import QueuedSnapshot
from seal_agent.journal.outbox_salvage import is_damage


class SnapshotQueue:
    """The snapshot queue's methods of the outbox, on its connection and lock."""

    if TYPE_CHECKING:
        path: Path
        _lock: threading.RLock
        _db: sqlite3.Connection

        def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]: ...
        def _write(self, what: str) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...
        def _repair(self, exc: sqlite3.Error) -> None: ...

    # -- snapshot queue -----------------------------------------------------------------------------------------

    def queue_snapshot(self, sha: str) -> int:
        """Queue the stored snapshot ``sha`` for sending (committed); returns its queue id. Idempotent per hash."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO snapshot_queue (sha, created_at) VALUES (?, ?)", (sha, time.time())
                )
                row = self._db.execute("SELECT qid FROM snapshot_queue WHERE sha = ?", (sha,)).fetchone()
            except sqlite3.Error as exc:
                if is_damage(exc):
                    self._repair(exc)  # queued again at the next try (the spool's, or the next start's)
                raise OutboxError(f"cannot queue snapshot {sha} in {self.path}: {exc}") from exc
        return int(row[0])

    def pending_snapshots(self, *, after: int = 0, limit: int = 100) -> list[QueuedSnapshot]:
        """Snapshots the court has not receipted with ``qid > after``, oldest first."""
        with self._lock:
            rows = self._query("SELECT qid, sha FROM snapshot_queue WHERE qid > ? ORDER BY qid LIMIT ?", (after, limit))
        return [QueuedSnapshot(int(qid), str(sha)) for qid, sha in rows]

    def snapshots_broker_acknowledged(self, qids: Collection[int]) -> None:
        """Mark queued snapshots the broker acknowledged; they stay queued until the court's receipt."""
        if qids:
            with self._write("mark snapshots broker-acknowledged") as db:
                db.executemany(
                    "UPDATE snapshot_queue SET acked_at = ? WHERE qid = ? AND acked_at IS NULL",
                    [(time.time(), qid) for qid in qids],
                )

    def snapshots_court_receipted(self, hashes: Collection[str]) -> list[int]:
        """The court receipted these snapshots: each queued one leaves the queue and is recorded as receipted (one
        transaction); their queue ids, in order."""
        if not hashes:
            return []
        with self._write("delete receipted snapshots") as db:
            found = sorted(
                (int(qid), str(sha))
                for h in hashes
                for qid, sha in db.execute("SELECT qid, sha FROM snapshot_queue WHERE sha = ?", (h,))
            )
            db.executemany("DELETE FROM snapshot_queue WHERE qid = ?", [(qid,) for qid, _sha in found])
            db.executemany("INSERT OR IGNORE INTO snapshot_receipted (sha) VALUES (?)", [(sha,) for _q, sha in found])
        return [qid for qid, _sha in found]

    def mark_snapshots_receipted(self, shas: Collection[str]) -> None:
        """Record stored snapshots as held by the court without a queue entry (stores kept before any record)."""
        with self._write("record receipted snapshots") as db:
            db.executemany("INSERT OR IGNORE INTO snapshot_receipted (sha) VALUES (?)", [(sha,) for sha in shas])

    def forget_snapshots(self, shas: Collection[str]) -> int:
        """Forget snapshots whose files are gone (thinned): queued or receipted; how many were still queued."""
        with self._write("forget snapshots") as db:
            queued = sum(db.execute("DELETE FROM snapshot_queue WHERE sha = ?", (sha,)).rowcount for sha in shas)
            db.executemany("DELETE FROM snapshot_receipted WHERE sha = ?", [(sha,) for sha in shas])
        return queued

    def was_receipted(self, sha: str) -> bool:
        """Whether the court receipted the stored snapshot ``sha``."""
        with self._lock:
            return bool(self._query("SELECT 1 FROM snapshot_receipted WHERE sha = ?", (sha,)))

    def receipted_snapshots(self) -> set[str]:
        """Hashes of the stored snapshots the court receipted."""
        with self._lock:
            return {str(sha) for (sha,) in self._query("SELECT sha FROM snapshot_receipted", ())}

    def queued_snapshots(self, *, broker_acknowledged: bool | None = None) -> set[str]:
        """Hashes of the snapshots waiting for the court's receipt; only those the broker acknowledged (True) or
        only those it did not (False)."""
        where = {None: "", True: " WHERE acked_at IS NOT NULL", False: " WHERE acked_at IS NULL"}[broker_acknowledged]
        with self._lock:
            return {str(sha) for (sha,) in self._query("SELECT sha FROM snapshot_queue" + where, ())}

    def snapshot_depth(self) -> int:
        """How many snapshots wait for the court's receipt."""
        with self._lock:
            return int(self._query("SELECT COUNT(*) FROM snapshot_queue", ())[0][0])
