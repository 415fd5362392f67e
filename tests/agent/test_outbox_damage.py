"""A damaged outbox page (a torn write, a failing SD card) costs the rows it held, never the delivery of the others.

Real SQLite files damaged for real: random bytes written over one page of a checkpointed outbox (a leaf of the events
table, or of its ``sha`` index, found with ``dbstat``), a real agent on mock pins, a real private Mosquitto and the
test court. The events that can still be read reach the court, before and after the damage, so do new ones; the seqs
that cannot be read are named in a signed ``event_lost``; the damaged file is kept aside.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.config import load_config
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from tests.agent.helpers import CourtSubscriber, RuntimeFactory, check_chain, pulse, verify_key, write_config

DEVICE = "seal-test-1"
#: Events about this size: several to a 4 KiB page, so a damaged page loses a range of them.
PAD = "x" * 500


def _fill(cfg: Path, runtimes: RuntimeFactory, count: int) -> list[int]:
    """Commit ``count`` events with the seal's runtime, never started (not connected); their seqs."""
    runtime = runtimes(cfg)
    try:
        return [runtime.recorder.record(EventType.HEARTBEAT, {"pad": PAD}).seq for _ in range(count)]
    finally:
        runtime.close()


def _damage(path: Path, name: str) -> int:
    """Checkpoint the outbox and write random bytes over one middle leaf page of ``name`` (table or index): its page
    number."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        leaves = [
            int(pageno)
            for (pageno,) in db.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (name,)
            )
        ]
    finally:
        db.close()
    assert len(leaves) >= 3, leaves
    page = leaves[len(leaves) // 2]
    with open(path, "r+b") as f:
        f.seek((page - 1) * page_size)
        f.write(os.urandom(page_size))
        os.fsync(f.fileno())
    return page


def _expand(ranges: list[list[int]]) -> set[int]:
    return {seq for first, last in ranges for seq in range(first, last + 1)}


def _losses(court: CourtSubscriber) -> list[dict[str, object]]:
    return [p for p in court.payloads(DEVICE, "event_lost") if p.get("reason") == "outbox_damaged"]


def test_a_damaged_page_found_at_start_costs_its_rows_only_and_the_loss_is_signed(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = write_config(tmp_path / "seal", broker, heartbeat_s=3600)
    committed = _fill(cfg, runtimes, 60)  # never started: nothing of these reaches the court before the damage
    path = load_config(cfg).outbox_path
    _damage(path, "outbox")

    runtime = runtimes(cfg)  # starts: the damage is found and the outbox rebuilt from what can be read
    runtime.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE) and len(c.seqs(DEVICE)) > 50, 30)  # no stall

    (loss,) = _losses(court)
    lost = _expand(loss["lost_seqs"])  # type: ignore[arg-type]
    assert lost and lost < set(committed), loss
    assert court.wait_for(lambda c: set(committed) - lost <= c.seqs(DEVICE), 30)  # before the damaged page and after
    assert not lost & court.seqs(DEVICE)
    check_chain(court.of(DEVICE), verify_key(cfg))  # signed; each event the court holds links to the one before
    assert runtime.outbox.setting("chain_device_id") == DEVICE  # the settings are kept
    assert any(r.levelno == logging.ERROR and "could not be read: [[" in r.getMessage() for r in caplog.records)
    assert runtime.delivery.events.wait_drained(30)  # and nothing is left behind: no stall
    kept = list(path.parent.glob("outbox.sqlite.damaged-*"))
    assert [p.name for p in kept if not p.name.endswith(("-wal", "-shm"))] == [loss["detail"].split("kept as ")[1]]  # type: ignore[union-attr]


def test_a_page_damaged_while_the_agent_runs_does_not_stop_the_delivery_of_the_others(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    court.receipting = False  # the events stay in the outbox
    cfg = write_config(tmp_path / "seal", broker, heartbeat_s=3600)
    runtime = runtimes(cfg, retry_s=2, receipt_timeout_s=1.0, receipt_timeout_max_s=4.0)
    runtime.start()
    committed = [runtime.recorder.record(EventType.HEARTBEAT, {"pad": PAD}).seq for _ in range(60)]
    assert court.wait_for(lambda c: set(committed) <= c.seqs(DEVICE), 30)
    _damage(load_config(cfg).outbox_path, "outbox")

    court.receipting = True
    broker.stop()  # the reconnect sends again everything not receipted, from the oldest: through the damaged page
    broker.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: "intrusion" in c.types(DEVICE), 30)  # no stall
    assert court.wait_for(lambda c: bool(_losses(c)), 30)
    (loss,) = _losses(court)
    lost = _expand(loss["lost_seqs"])  # type: ignore[arg-type]
    assert lost and lost < set(committed), loss
    assert runtime.delivery.events.wait_drained(30)  # every readable event receipted, the lost ones no longer held
    assert runtime.outbox.depth() == 0


def test_a_damaged_index_page_does_not_stop_receipts_nor_new_events(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    cfg = write_config(tmp_path / "seal", broker, heartbeat_s=3600)
    committed = _fill(cfg, runtimes, 300)  # the sha index spans several pages
    _damage(load_config(cfg).outbox_path, "outbox_sha")

    runtime = runtimes(cfg)
    runtime.start()
    for _ in range(3):
        pulse(mock_pins)
    assert court.wait_for(lambda c: set(committed) <= c.seqs(DEVICE) and "intrusion" in c.types(DEVICE), 30)
    assert runtime.delivery.events.wait_drained(30)  # the court's receipts empty the outbox
    assert not _losses(court)  # an index holds no event: nothing is lost, nothing said to be


def _cut_short(path: Path, pages_left: Callable[[int], int]) -> tuple[int, int]:
    """Checkpoint the outbox and cut its file short at a page boundary (``pages_left(pages)`` pages kept), as fsck
    or a torn card leaves it: (page size, pages before the cut). The header still counts every page."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    finally:
        db.close()
    pages = path.stat().st_size // page_size
    os.truncate(path, pages_left(pages) * page_size)
    return page_size, pages


@pytest.mark.parametrize(
    "pages_left", [lambda pages: pages - 1, lambda pages: pages // 2], ids=["one page short", "half its pages"]
)
def test_an_outbox_cut_short_is_salvaged_at_start_and_the_cut_off_events_are_signed_lost(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    pages_left: Callable[[int], int],
) -> None:
    """SQLite refuses a file shorter than its header says as soon as it reads its schema ("database disk image is
    malformed", from the pragmas that open it): the agent used to refuse to start on it, and the salvage could not
    read it either. Now it starts, with the rows before the cut, its chain's place and its settings."""
    cfg = write_config(tmp_path / "seal", broker, heartbeat_s=3600)
    committed = _fill(cfg, runtimes, 120)
    path = load_config(cfg).outbox_path
    _cut_short(path, pages_left)

    runtime = runtimes(cfg)  # used to raise OutboxError: cannot open outbox …: database disk image is malformed
    runtime.start()
    pulse(mock_pins)
    assert court.wait_for(lambda c: bool(_losses(c)) and "intrusion" in c.types(DEVICE), 30)
    (loss,) = _losses(court)
    lost = _expand(loss["lost_seqs"])  # type: ignore[arg-type]
    assert lost and lost < set(committed) and max(committed) in lost, loss  # the events at the file's end
    assert court.wait_for(lambda c: set(committed) - lost <= c.seqs(DEVICE), 30)
    assert not lost & court.seqs(DEVICE)
    assert min(court.seqs(DEVICE) - set(committed)) == max(committed) + 1  # the chain goes on where it stood
    check_chain(court.of(DEVICE), verify_key(cfg))
    assert runtime.outbox.setting("chain_device_id") == DEVICE
    assert runtime.delivery.events.wait_drained(30)
    assert [p for p in path.parent.glob("outbox.sqlite.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
