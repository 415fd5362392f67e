"""One real seal among the bench's simulated ones: PIR edge → its ``intrusion`` row in the court's database.

The real ``SealRuntime`` on gpiozero ``MockFactory`` pins (a silent speaker, as in ``bench/dashboard_latency.py``),
registered in the court's database and pinning the court's key, **in a process of its own**: a seal is a device of
its own, and in the bench's process it would wait for the interpreter lock behind the hundred simulated seals'
threads. :meth:`PirProbe.begin` asks that process to drive the PIR pin high and poll the court's database (every
2 ms, its own connection) until the seal's ``intrusion`` row is committed, and reads back the times.

The same poll sees every other event row as it is committed: with ``until_rows``, the process keeps polling after
its triggers until that many rows of other seals have appeared, and gives the time (``time.time()``) each was first
seen — an upper bound of its commit's, by the poll's interval (2 ms while an edge waits for its row, else 10 ms)
and query — so that the bench measures publish → committed itself, not only publish → receipt. Rows are read by
increasing id, which is their commit order only with one ingest writer (the court alone, not ``--workers``).

    python bench/ingest_pir.py --config AGENT_TOML --database-url URL   # what PirProbe runs; commands on stdin
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from pathlib import Path
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
    """The bench's side: registers the seal, starts its process, and asks it for measurements."""

    def __init__(self, directory: Path, broker: PrivateBroker, court: CourtProcess, case_no: str) -> None:
        self.config = seal_config(
            directory,
            broker,
            device_id=DEVICE,
            case_no=case_no,
            court_public_key=court.court_public_key,
            heartbeat_s=3600,
            warning="repeat_s = 3600\nmax_repeats = 0\ncooldown_s = 0",
        )
        self.court = court
        self.case_no = case_no
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the seal's process; register the key it made with the court; wait for its first event's receipt."""
        script = [sys.executable, __file__, "--config", str(self.config), "--database-url", self.court.database_url]
        self.process = subprocess.Popen(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdin is not None
        key = self.process.stdout.readline().strip()
        with session_scope(self.court.session_factory) as session:
            register_seal(session, actor=None, device_id=DEVICE, case_no=self.case_no, public_key=key)
        self.process.stdin.write("start\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the PIR seal did not start")

    def begin(self, triggers: int, gap_s: float, until_rows: int = 0) -> None:
        """Start ``triggers`` PIR edges ``gap_s`` apart; returns once the process polls (rows committed from then on
        are seen); with ``until_rows`` it polls on until that many rows of other seals were committed."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{triggers} {gap_s} {until_rows}\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "polling":
            raise RuntimeError("the PIR seal's process did not start polling")

    def result(self, series: Series) -> dict[tuple[str, int], float]:
        """Each edge → row time added to ``series``; the time each row of other seals was first seen committed."""
        assert self.process is not None and self.process.stdout is not None
        answer = json.loads(self.process.stdout.readline())
        series.values += answer["pir"]
        return {(device_id, seq): at for device_id, seq, at in answer["seen"]}

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(30)


#: Rows committed since the last poll: ids only grow (one writer), so ``id > last`` is what is new.
_NEW_ROWS = select(Event.id, Event.device_id, Event.seq).where(Event.id > bindparam("last")).order_by(Event.id)
#: The PIR seal's own rows after a seq: by seq, not id, so that an intrusion row committed by one of several ingest
#: workers after a row with a higher id (``--workers``) is still seen.
_SEAL_ROWS = (
    select(Event.seq, Event.type).where(Event.device_id == DEVICE, Event.seq > bindparam("after")).order_by(Event.seq)
)
POLL_S = 0.002
#: Between two PIR edges, rows are only waited for (publish → committed): a poll every 2 ms all along would cost the
#: court's machine a tenth of a core, and change what is measured.
ROWS_POLL_S = 0.01


def measure(pin: Any, session_factory: SessionFactory, triggers: int, gap_s: float, until_rows: int) -> dict[str, Any]:
    """Drive the pin high ``triggers`` times, each ``gap_s`` after the last one's row, polling every :data:`POLL_S`
    for new event rows all along, and on until ``until_rows`` rows of other seals were seen."""
    pir: list[float] = []
    seen: list[tuple[str, int, float]] = []
    with session_factory() as session:
        last = int(session.scalar(select(func.max(Event.id))) or 0)
        after = int(session.scalar(select(func.max(Event.seq)).where(Event.device_id == DEVICE)) or 0)
    print("polling", flush=True)
    edge_at: float | None = None
    next_edge = time.perf_counter()
    deadline = time.perf_counter() + 600
    while len(pir) < triggers or len(seen) < until_rows:
        if len(pir) < triggers and edge_at is None and time.perf_counter() >= next_edge:
            edge_at = time.perf_counter()
            pin.drive_high()
        with session_factory() as session:
            rows = session.execute(_NEW_ROWS, {"last": last}).all() if until_rows else []
            own = session.execute(_SEAL_ROWS, {"after": after}).all() if edge_at is not None else []
        now, wall = time.perf_counter(), time.time()
        for row_id, device_id, seq in rows:  # asked for only with one writer: else out of id order
            last = max(last, row_id)
            if device_id != DEVICE:
                seen.append((device_id, seq, wall))
        for seq, kind in own:
            after = max(after, seq)
            if kind == "intrusion" and edge_at is not None:
                pir.append(now - edge_at)
                pin.drive_low()
                edge_at, next_edge = None, now + gap_s
        if now > deadline or (edge_at is not None and now - edge_at > 30):
            raise TimeoutError(f"{len(pir)} of {triggers} intrusion rows, {len(seen)} of {until_rows} rows seen")
        time.sleep(POLL_S if edge_at is not None else ROWS_POLL_S)
    return {"pir": pir, "seen": seen}


def main(argv: list[str]) -> int:
    from gpiozero.pins.mock import MockFactory

    from seal_agent.config import load_config
    from seal_agent.runtime import SealRuntime
    from seal_protocol.signing import load_signing_key

    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args(argv)
    factory = MockFactory()
    config = load_config(args.config)
    runtime = SealRuntime(config, pin_factory=factory, speaker=SilentSpeaker())
    print(base64.b64encode(bytes(load_signing_key(config.key_path).verify_key)).decode("ascii"), flush=True)
    sys.stdin.readline()  # registered with the court
    engine = make_engine(args.database_url)
    # polled every 2 ms while the court writes: on SQLite a poll that took the write lock (BEGIN IMMEDIATE, as the
    # court's own sessions do) would wait for the court's batches in SQLite's busy handler, up to 100 ms a sleep
    session_factory = make_session_factory(engine.execution_options(**READ_ONLY))
    runtime.start()
    try:
        assert runtime.publisher.wait_connected(30), "the PIR seal did not connect"
        assert runtime.delivery.events.wait_drained(60), "the court did not receipt agent_started"
        print("ready", flush=True)
        for line in sys.stdin:  # "TRIGGERS GAP_S UNTIL_ROWS" per measurement; EOF: stop
            triggers, gap_s, until_rows = line.split()
            answer = measure(factory.pin(PIR_PIN), session_factory, int(triggers), float(gap_s), int(until_rows))
            print(json.dumps(answer), flush=True)
    finally:
        runtime.close()
        factory.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
