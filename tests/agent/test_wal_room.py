"""The outbox's write-ahead log gives back its room on a full disk, on a real small filesystem (a 1 MiB tmpfs
mounted by the test, as in test_disk_room): SQLite keeps the log at the size it once reached, and on a tiny disk the
log alone fills it while the database holds a few pages. A commit refused with ``SQLITE_FULL`` checkpoints it into
the database and truncates it, then tries again; a thinning for a full disk gives back the log's room too (the
checkpoint may need the room the thinning made). Before, the seal held its events in memory, and said so, for good."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pytest

from seal_agent.errors import OutboxError
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.snapshot_spool import SnapshotSpool
from seal_agent.journal.snapshot_store import SnapshotStore
from seal_protocol import EventType, envelope_hash
from tests.agent.spool_helpers import jpeg_of, recorder_on, thinnings
from tests.agent.test_disk_room import DEFAULT_QUOTA, small_disk  # noqa: F401 - the fixture

EVENTS = 400  # each commit (event, then its receipt) adds pages to the log: some 80 of them fill the disk
PAYLOAD = {"note": "x" * 2000}  # a page of its own per event


def _wal(outbox: Outbox) -> int:
    wal = Path(f"{outbox.path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_log_that_fills_a_tiny_disk_is_checkpointed_and_truncated_before_any_event_is_held(
    small_disk: Path,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A seal in its steady state (its database at its size: restarted once), no snapshot store: the court receipts
    each event, so the database stays small, but every commit appends to the log until it takes the whole disk."""
    path = small_disk / "state" / "outbox.db"
    with Outbox(path) as outbox:  # a few events and their receipts: the database's pages exist; closing checkpoints
        recorder = recorder_on(outbox)
        for _ in range(5):
            outbox.court_receipted([envelope_hash(recorder.record(EventType.HEARTBEAT, PAYLOAD).data)])
    outbox = Outbox(path)
    try:
        recorder = recorder_on(outbox)
        with caplog.at_level(logging.WARNING, logger="seal_agent.journal.disk_room"):
            for _ in range(EVENTS):  # was: OutboxError (SQLITE_FULL) after some 45, the log holding the whole disk
                outbox.court_receipted([envelope_hash(recorder.record(EventType.HEARTBEAT, PAYLOAD).data)])
        assert recorder.held == 0 and recorder.storage.report is None
        assert outbox.depth() == 0 and outbox.last_seq == EVENTS + 5
        assert any("checkpointed and truncated" in r.getMessage() for r in caplog.records)
        assert _wal(outbox) < 1024 * 1024
    finally:
        outbox.close()


def test_a_thinning_for_a_full_disk_gives_back_the_log_s_room_as_well(
    small_disk: Path,  # noqa: F811 - the fixture imported above
) -> None:
    """A fresh outbox (its log never checkpointed: the database must grow to take the log's pages, so the log's
    checkpoint needs room first) beside receipted snapshots: the full disk thins them, and the log gives back its
    room then. Before, the thinned room (and then the reserve) went into the log, and the events were held for good."""
    state = small_disk / "state"
    outbox = Outbox(state / "outbox.db")
    try:
        recorder = recorder_on(outbox)
        spool = SnapshotSpool(SnapshotStore(state / "snapshots", DEFAULT_QUOTA), recorder)
        for n in range(4):
            spool.add(jpeg_of(n, side=160))
        items = spool.pending(after=0, limit=1000)
        spool.broker_acknowledged([item.key for item in items])
        spool.court_receipted([item.sha for item in items])

        unreceipted: list[str] = []
        for i in range(EVENTS):
            turn = recorder.record_in_line(EventType.HEARTBEAT, PAYLOAD)  # a full disk: held, room made, committed
            assert turn.settled and recorder.held == 0, f"event {i} held in memory"  # was: held for good
            unreceipted.append(envelope_hash(turn.result().data))
            with contextlib.suppress(OutboxError):  # a receipt the full disk refused: the court sends it again
                outbox.court_receipted(unreceipted)
                unreceipted = []
        assert thinnings(outbox), "no snapshot was thinned: the disk never filled"
        assert recorder.storage.report is None
        assert _wal(outbox) < 1024 * 1024
    finally:
        outbox.close()
