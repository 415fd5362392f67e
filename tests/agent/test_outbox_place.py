"""An outbox file deleted, replaced or emptied while the agent runs costs no committed event it can still read, and
the court is told in a signed ``event_lost``.

A real agent on gpiozero mock pins, a real private Mosquitto and the test court; the files are deleted, replaced
and truncated for real under the running agent (:mod:`seal_agent.journal.outbox_place`,
:mod:`seal_agent.journal.outbox_salvage`).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from seal_agent.behaviour.commands import LAST_COMMAND_SETTING
from seal_agent.journal.chain import DEVICE_ID_SETTING
from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType
from tests.agent.helpers import (
    CourtSubscriber,
    RuntimeFactory,
    check_chain,
    pulse,
    verify_key,
    wait_until,
    write_config,
)

DEVICE = "seal-test-1"


def _lost(court: CourtSubscriber, reason: str) -> list[dict[str, object]]:
    return [p for p in court.payloads(DEVICE, "event_lost") if p.get("reason") == reason]


def ranges(seqs: list[int]) -> list[list[int]]:
    """Sorted seqs as ``[[first, last], …]`` ranges."""
    found: list[list[int]] = []
    for seq in sorted(seqs):
        if found and found[-1][1] == seq - 1:
            found[-1][1] = seq
        else:
            found.append([seq, seq])
    return found


def _outbox_files(state: Path) -> list[Path]:
    return [p for p in state.glob("outbox.sqlite*") if p.name.rsplit("-", 1)[-1] in ("sqlite", "wal", "shm")]


def _started(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory
) -> tuple[Path, SealRuntime]:
    """A running seal that committed 20 heartbeats and ``agent_started``; its config."""
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)
    for _ in range(20):
        runtime.recorder.record(EventType.HEARTBEAT, {})
    runtime.start()
    assert court.wait_for(lambda c: "agent_started" in c.types(DEVICE), 30)
    return config, runtime


def _restarts_and_delivers(
    config: Path, runtime: SealRuntime, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    """The seal starts again on its outbox (nothing refused), and a new intrusion continues the chain."""
    runtime.close()
    first = len(court.of(DEVICE))
    court.receipting = True
    again = runtimes(config)
    again.start()
    assert court.wait_for(lambda c: "agent_started" in [r.envelope.type.value for r in c.of(DEVICE)[first:]], 30)
    pulse(mock_pins)
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 2, 30)
    seqs = check_chain(court.of(DEVICE), verify_key(config))
    assert sorted(seqs) == list(range(1, max(seqs) + 1))  # no seq lost, none twice


def test_an_outbox_deleted_while_running_is_written_back_and_the_court_told(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    court.receipting = False  # everything stays in the outbox: all of it would be lost with the deleted file
    config, runtime = _started(tmp_path, broker, court, runtimes)
    state = tmp_path / "state"
    for path in _outbox_files(state):
        path.unlink()
    pulse(mock_pins)
    assert court.wait_for(lambda c: bool(c.payloads(DEVICE, "intrusion")) and bool(_lost(c, "outbox_deleted")), 30)
    (lost,) = _lost(court, "outbox_deleted")
    assert lost["lost_seqs"] == [] and lost["lost_snapshot_ids"] == [] and lost["lost_other_rows"] is False
    assert "deleted" in str(lost["detail"]) and "nothing lost" in str(lost["detail"])
    assert (state / "outbox.sqlite").exists() and not list(state.glob("*.restore*"))
    db = sqlite3.connect(state / "outbox.sqlite")  # what the file at the path holds now, read by another reader
    try:
        on_disk = {int(seq) for (seq,) in db.execute("SELECT seq FROM outbox")}
    finally:
        db.close()
    intrusion = next(r.envelope.seq for r in court.of(DEVICE) if r.envelope.type is EventType.INTRUSION)
    assert {1, intrusion} <= on_disk  # before the deletion and after it: both durable at the path
    _restarts_and_delivers(config, runtime, court, runtimes, mock_pins)


def test_an_outbox_replaced_while_running_keeps_the_other_file_aside(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    court.receipting = False
    config, runtime = _started(tmp_path, broker, court, runtimes)
    state = tmp_path / "state"
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x TEXT)")
    db.execute("INSERT INTO t VALUES ('not the seal''s')")
    db.commit()
    db.close()
    os.replace(other, state / "outbox.sqlite")  # the path now names another file; the open one is unlinked
    pulse(mock_pins)
    assert court.wait_for(lambda c: bool(c.payloads(DEVICE, "intrusion")) and bool(_lost(c, "outbox_replaced")), 30)
    (lost,) = _lost(court, "outbox_replaced")
    (kept,) = [p for p in state.glob("outbox.sqlite.displaced-*") if p.name.endswith("Z")]
    assert kept.name in str(lost["detail"]) and lost["lost_seqs"] == []
    db = sqlite3.connect(kept)
    try:
        assert db.execute("SELECT x FROM t").fetchall() == [("not the seal's",)]  # kept as it was found
    finally:
        db.close()
    _restarts_and_delivers(config, runtime, court, runtimes, mock_pins)


def test_a_write_ahead_log_replaced_while_running_is_kept_aside_and_named(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    court.receipting = False
    config, runtime = _started(tmp_path, broker, court, runtimes)
    state = tmp_path / "state"
    assert (state / "outbox.sqlite-wal").exists()
    other = tmp_path / "other-wal"
    other.write_bytes(b"not the seal's write-ahead log")
    os.replace(other, state / "outbox.sqlite-wal")
    pulse(mock_pins)
    assert court.wait_for(lambda c: bool(c.payloads(DEVICE, "intrusion")) and bool(_lost(c, "outbox_replaced")), 30)
    (lost,) = _lost(court, "outbox_replaced")
    (kept,) = state.glob("outbox.sqlite.displaced-*-wal")
    assert kept.read_bytes() == b"not the seal's write-ahead log"  # kept as it was found, and the event says where
    assert kept.name in str(lost["detail"]) and "nothing lost" in str(lost["detail"]) and lost["lost_seqs"] == []
    _restarts_and_delivers(config, runtime, court, runtimes, mock_pins)


def test_an_outbox_emptied_while_running_continues_the_chain_and_signs_what_is_lost(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: "agent_started" in c.types(DEVICE), 30)
    outbox = runtime.recorder.outbox
    assert wait_until(lambda: outbox.depth() == 0, 30)  # seq 1 receipted: not the outbox's to lose
    outbox.set_setting(LAST_COMMAND_SETTING, "41")
    court.receipting = False
    unreceipted = [runtime.recorder.record(EventType.HEARTBEAT, {}).seq for _ in range(30)]
    # the court has them, unreceipted (on a loaded machine the last could still be in the outbox only: truly lost)
    assert court.wait_for(lambda c: set(unreceipted) <= c.seqs(DEVICE), 30)
    db = sqlite3.connect(outbox.path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in the main file: emptying it loses them
    finally:
        db.close()
    os.truncate(outbox.path, 0)
    court.receipting = True
    pulse(mock_pins)
    assert court.wait_for(lambda c: bool(c.payloads(DEVICE, "intrusion")) and bool(_lost(c, "outbox_damaged")), 30)
    (lost,) = _lost(court, "outbox_damaged")
    assert lost["lost_seqs"] == [[unreceipted[0], unreceipted[-1]]]  # what the court had not receipted, no more
    state = tmp_path / "state"
    assert not list(state.glob("outbox.sqlite.salvage*"))
    assert list(state.glob("outbox.sqlite.damaged-*"))  # the emptied file kept, as evidence
    assert outbox.setting(LAST_COMMAND_SETTING) == "41" and outbox.setting(DEVICE_ID_SETTING) == DEVICE
    assert wait_until(lambda: outbox.depth() == 0, 30)  # delivered and receipted without a restart
    seqs = check_chain(court.of(DEVICE), verify_key(config))  # the chain goes on from the seq and hash remembered
    assert sorted(seqs) == list(range(1, max(seqs) + 1)) and max(seqs) > unreceipted[-1]
    runtime.close()
    again = runtimes(config)
    again.start()
    assert court.wait_for(lambda c: c.types(DEVICE).count("agent_started") == 2, 30)
    pulse(mock_pins)
    assert court.wait_for(lambda c: len(c.payloads(DEVICE, "intrusion")) == 2, 30)
    assert again.recorder.outbox.setting(LAST_COMMAND_SETTING) == "41"
    check_chain(court.of(DEVICE), verify_key(config))


def _receipted_out_of_order_then_emptied(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtSubscriber,
    runtimes: RuntimeFactory,
    mock_pins: MockFactory,
    count: int,
    receipted: Callable[[int], bool],
) -> tuple[dict[str, object], list[int], list[int]]:
    """A running seal commits ``count`` heartbeats the court gets; the court receipts those whose index
    ``receipted`` picks (later ones before earlier ones), then the outbox file is emptied: the ``outbox_damaged``
    event_lost, the seqs receipted and those not."""
    config = write_config(tmp_path, broker)
    runtime = runtimes(config)
    runtime.start()
    assert court.wait_for(lambda c: "agent_started" in c.types(DEVICE), 30)
    outbox = runtime.recorder.outbox
    assert wait_until(lambda: outbox.depth() == 0, 30)
    court.receipting = False
    seqs = [runtime.recorder.record(EventType.HEARTBEAT, {}).seq for _ in range(count)]
    assert court.wait_for(lambda c: set(seqs) <= {r.envelope.seq for r in c.of(DEVICE)}, 30)
    data = {r.envelope.seq: r.data for r in court.of(DEVICE)}
    done = [seq for i, seq in enumerate(seqs) if receipted(i)]
    kept = [seq for seq in seqs if seq not in done]
    court.send_receipt(DEVICE, [hashlib.sha256(data[seq]).hexdigest() for seq in reversed(done)])
    assert wait_until(lambda: outbox.depth() == len(kept), 30)  # deleted: the earlier ones still held
    db = sqlite3.connect(outbox.path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    os.truncate(outbox.path, 0)
    court.receipting = True
    pulse(mock_pins)
    assert court.wait_for(lambda c: bool(c.payloads(DEVICE, "intrusion")) and bool(_lost(c, "outbox_damaged")), 30)
    (lost,) = _lost(court, "outbox_damaged")
    assert wait_until(lambda: outbox.depth() == 0, 30)
    seen = check_chain(court.of(DEVICE), verify_key(config))
    assert sorted(seen) == list(range(1, max(seen) + 1))
    runtime.close()
    return lost, done, kept


def test_an_emptied_outbox_names_as_lost_only_the_seqs_it_held_not_those_receipted_out_of_order(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    lost, done, kept = _receipted_out_of_order_then_emptied(
        tmp_path, broker, court, runtimes, mock_pins, 30, lambda i: 10 <= i < 20 or i in (3, 27)
    )
    assert lost["lost_seqs"] == ranges(kept)  # the held ones, in four ranges: none of the ten receipted between
    assert len(ranges(kept)) == 4 and "seq ranges" not in str(lost["detail"])


def test_more_than_50_lost_ranges_name_the_first_50_and_say_how_many(
    tmp_path: Path, broker: PrivateBroker, court: CourtSubscriber, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    lost, done, kept = _receipted_out_of_order_then_emptied(
        tmp_path, broker, court, runtimes, mock_pins, 120, lambda i: i >= 10 and i % 2 == 0
    )
    held = ranges(kept)
    assert len(held) == 56 and lost["lost_seqs"] == held[:50]  # each named range lost, whole; none receipted
    assert str(lost["detail"]).startswith("56 seq ranges, 0 snapshot id ranges (the first 50 named); ")
