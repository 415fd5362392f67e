"""One real seal among the bench's simulated ones: PIR edge → its ``intrusion`` row in the court's database.

The real ``SealRuntime`` on gpiozero ``MockFactory`` pins (a silent speaker, as in ``bench/dashboard_latency.py``),
registered in the court's database and pinning the court's key, **in a process of its own**: a seal is a device of
its own, and in the bench's process it would wait for the interpreter lock behind the hundred simulated seals'
threads. The court's database is watched by **another process** (the observer), not the seal's: an observer polling
every 2 ms in the seal's process took the seal's interpreter lock from its edge's thread (the twenty-first round in
docs/benchmarks.md measured what that cost). :meth:`PirProbe.begin` asks the seal's process to drive the PIR pin high
``triggers`` times, ``gap_s`` apart; at each edge it writes a byte into a pipe the observer waits on, and the
observer polls (every 2 ms) until that edge's ``intrusion`` row is committed. Both processes read ``time.time()``:
edge → row is the row's first sight minus the edge's time, one clock, one machine.

The same poll sees every other event row as it is committed: with ``until_rows``, the observer keeps polling after
the triggers until that many rows of other seals have appeared, and gives the time (``time.time()``) each was first
seen — an upper bound of its commit's, by the poll's interval (2 ms while an edge waits for its row, else 10 ms)
and query — so that the bench measures publish → committed itself, not only publish → receipt. Rows are read by
increasing id, which is their commit order only with one ingest writer (the court alone, not ``--workers``).

    python bench/ingest_pir.py --config AGENT_TOML --edges FD              # the seal; commands on stdin
    python bench/ingest_pir.py --database-url URL --edges FD               # the observer; commands on stdin
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path
from select import select as select_fds
from typing import Any

from bench_support import PIR_PIN, Series, SilentSpeaker
from sqlalchemy import bindparam, func, select

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess, seal_config
from server.core.db import READ_ONLY, SessionFactory, make_engine, make_session_factory, session_scope
from server.evidence.models import Event
from server.seals.registry import register_seal

DEVICE = "seal-bench-pir"


class PirProbe:
    """The bench's side: registers the seal, starts its process and the observer's, and asks them for measurements."""

    def __init__(self, directory: Path, broker: PrivateBroker, court: CourtProcess, case_no: str) -> None:
        self.config = seal_config(
            directory,
            broker,
            device_id=DEVICE,
            case_no=case_no,
            court_public_key=court.court_public_key,
            heartbeat_s=3600,
            warning="repeat_s = 3600\nmax_repeats = 0\ncooldown_s = 0",
            sensors="trigger_burst = 1000000",  # each edge a trigger: a real seal would merge them as flapping
        )
        self.court = court
        self.case_no = case_no
        self.seal: subprocess.Popen[str] | None = None
        self.observer: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the seal's process; register the key it made with the court; wait for its first event's receipt;
        start the observer, which the seal's edges wake through a pipe."""
        edges_read, edges_write = os.pipe()
        try:
            seal = [sys.executable, __file__, "--config", str(self.config), "--edges", str(edges_write)]
            self.seal = _started(seal, edges_write)
            key = _line(self.seal)
            with session_scope(self.court.session_factory) as session:
                register_seal(session, actor=None, device_id=DEVICE, case_no=self.case_no, public_key=key)
            _say(self.seal, "start")
            if _line(self.seal) != "ready":
                raise RuntimeError("the PIR seal did not start")
            observer = [sys.executable, __file__, "--database-url", self.court.database_url, "--edges", str(edges_read)]
            self.observer = _started(observer, edges_read)
        finally:
            os.close(edges_read)
            os.close(edges_write)

    def begin(self, triggers: int, gap_s: float, until_rows: int = 0) -> None:
        """Start ``triggers`` PIR edges ``gap_s`` apart; returns once the observer polls (rows committed from then on
        are seen); with ``until_rows`` it polls on until that many rows of other seals were committed."""
        assert self.seal is not None and self.observer is not None
        _say(self.observer, f"{triggers} {until_rows}")
        if _line(self.observer) != "polling":
            raise RuntimeError("the observer did not start polling")
        _say(self.seal, f"{triggers} {gap_s}")

    def result(self, series: Series, legs: tuple[Series, Series] | None = None) -> dict[tuple[str, int], float]:
        """Each edge → row time added to ``series`` (and with ``legs``, split at the row's ``received_at``: edge →
        received by the court, received → row seen); the time each row of other seals was first seen committed."""
        assert self.seal is not None and self.observer is not None
        edges = json.loads(_line(self.seal))
        answer = json.loads(_line(self.observer))
        for edge, (row, received) in zip(edges, answer["rows"], strict=True):
            series.values.append(row - edge)
            if legs is not None:
                legs[0].values.append(received - edge)
                legs[1].values.append(row - received)
        return {(device_id, seq): at for device_id, seq, at in answer["seen"]}

    def close(self) -> None:
        for process in (self.seal, self.observer):
            if process is not None:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(30)


def _started(command: list[str], fd: int) -> subprocess.Popen[str]:
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(fd,))


def _say(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


#: Rows committed since the last poll: ids only grow (one writer), so ``id > last`` is what is new.
_NEW_ROWS = select(Event.id, Event.device_id, Event.seq).where(Event.id > bindparam("last")).order_by(Event.id)
#: The PIR seal's own rows after a seq: by seq, not id, so that an intrusion row committed by one of several ingest
#: workers after a row with a higher id (``--workers``) is still seen.
_SEAL_ROWS = (
    select(Event.seq, Event.type, Event.received_at)
    .where(Event.device_id == DEVICE, Event.seq > bindparam("after"))
    .order_by(Event.seq)
)
POLL_S = 0.002
#: While no edge waits for its row, rows are only waited for (publish → committed): a poll every 2 ms all along would
#: cost the court's machine a tenth of a core, and change what is measured.
ROWS_POLL_S = 0.01
#: How long the pin stays high at each edge.
HIGH_S = 0.05


def drive(pin: Any, edges: int, triggers: int, gap_s: float) -> list[float]:
    """The seal's side: drive the pin high ``triggers`` times, ``gap_s`` apart, each after a byte into ``edges``
    (the observer's wake-up); the time of each edge (``time.time()``)."""
    times: list[float] = []
    next_edge = time.monotonic()
    for _ in range(triggers):
        time.sleep(max(0.0, next_edge - time.monotonic()))
        os.write(edges, b"e")
        times.append(time.time())
        pin.drive_high()
        next_edge = time.monotonic() + gap_s
        time.sleep(HIGH_S)
        pin.drive_low()
    return times


def observe(session_factory: SessionFactory, edges: int, triggers: int, until_rows: int) -> dict[str, Any]:
    """The observer's side: the time each of the next ``triggers`` intrusion rows of the PIR seal was first seen (with
    its ``received_at``, the court's receive time, both as ``time.time()`` values), polling every :data:`POLL_S`
    while an edge waits for its row (else every :data:`ROWS_POLL_S`), and on until ``until_rows`` rows of other seals
    were seen."""
    rows: list[tuple[float, float]] = []
    seen: list[tuple[str, int, float]] = []
    with session_factory() as session:
        last = int(session.scalar(select(func.max(Event.id))) or 0)
        after = int(session.scalar(select(func.max(Event.seq)).where(Event.device_id == DEVICE)) or 0)
    print("polling", flush=True)
    waiting = 0  # edges whose row is not seen yet
    deadline = time.monotonic() + 600
    while len(rows) < triggers or len(seen) < until_rows:
        ready, _, _ = select_fds([edges], [], [], POLL_S if waiting else ROWS_POLL_S)
        if ready:
            waiting += len(os.read(edges, 64))
        with session_factory() as session:
            new = session.execute(_NEW_ROWS, {"last": last}).all() if until_rows else []
            own = session.execute(_SEAL_ROWS, {"after": after}).all() if waiting else []
        wall = time.time()
        for row_id, device_id, seq in new:  # asked for only with one writer: else out of id order
            last = max(last, row_id)
            if device_id != DEVICE:
                seen.append((device_id, seq, wall))
        for seq, kind, received_at in own:
            after = max(after, seq)
            if kind == "intrusion":
                rows.append((wall, received_at.replace(tzinfo=received_at.tzinfo or UTC).timestamp()))
                waiting -= 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(rows)} of {triggers} intrusion rows, {len(seen)} of {until_rows} rows seen")
    return {"rows": rows, "seen": seen}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, help="the seal's configuration: run the seal")
    parser.add_argument("--database-url", help="the court's database: run the observer")
    parser.add_argument("--edges", type=int, required=True, help="the pipe's file descriptor (written / read)")
    args = parser.parse_args(argv)
    if args.config is not None:
        return run_seal(args.config, args.edges)
    engine = make_engine(args.database_url)
    # polled every 2 ms while the court writes: on SQLite a poll that took the write lock (BEGIN IMMEDIATE, as the
    # court's own sessions do) would wait for the court's batches in SQLite's busy handler, up to 100 ms a sleep
    session_factory = make_session_factory(engine.execution_options(**READ_ONLY))
    try:
        for line in sys.stdin:  # "TRIGGERS UNTIL_ROWS" per measurement; EOF: stop
            triggers, until_rows = line.split()
            print(json.dumps(observe(session_factory, args.edges, int(triggers), int(until_rows))), flush=True)
    finally:
        engine.dispose()
    return 0


def run_seal(config_path: Path, edges: int) -> int:
    from gpiozero.pins.mock import MockFactory

    from seal_agent.config import load_config
    from seal_agent.runtime import SealRuntime
    from seal_protocol.signing import load_signing_key

    factory = MockFactory()
    config = load_config(config_path)
    runtime = SealRuntime(config, pin_factory=factory, speaker=SilentSpeaker())
    print(base64.b64encode(bytes(load_signing_key(config.key_path).verify_key)).decode("ascii"), flush=True)
    sys.stdin.readline()  # registered with the court
    runtime.start()
    try:
        assert runtime.publisher.wait_connected(30), "the PIR seal did not connect"
        assert runtime.delivery.events.wait_drained(60), "the court did not receipt agent_started"
        print("ready", flush=True)
        for line in sys.stdin:  # "TRIGGERS GAP_S" per measurement; EOF: stop
            triggers, gap_s = line.split()
            print(json.dumps(drive(factory.pin(PIR_PIN), edges, int(triggers), float(gap_s))), flush=True)
    finally:
        runtime.close()
        factory.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
