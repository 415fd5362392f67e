"""One real seal among the bench's simulated ones: PIR edge → its ``intrusion`` row in the court's database.

The real ``SealRuntime`` on gpiozero ``MockFactory`` pins (a silent speaker, as in ``bench/dashboard_latency.py``),
registered in the court's database and pinning the court's key, **in a process of its own**: a seal is a device of
its own, and in the bench's process it would wait for the interpreter lock behind the hundred simulated seals'
threads. :meth:`PirProbe.measure` asks that process to drive the PIR pin high and poll the court's database (every
2 ms, its own connection) until the seal's ``intrusion`` row is committed, and reads back the times.

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
from sqlalchemy import func, select

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

    def measure(self, triggers: int, gap_s: float, series: Series) -> None:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{triggers} {gap_s}\n")
        self.process.stdin.flush()
        series.values += json.loads(self.process.stdout.readline())

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(30)


def intrusions(session_factory: SessionFactory) -> int:
    with session_factory() as session:
        query = select(func.count()).select_from(Event).where(Event.device_id == DEVICE, Event.type == "intrusion")
        return int(session.scalar(query) or 0)


def measure(pin: Any, session_factory: SessionFactory, triggers: int, gap_s: float) -> list[float]:
    values = []
    for _ in range(triggers):
        before = intrusions(session_factory)
        t0 = time.perf_counter()
        pin.drive_high()
        while intrusions(session_factory) == before:
            if time.perf_counter() - t0 > 30:
                raise TimeoutError("no intrusion row within 30 s")
            time.sleep(0.002)
        values.append(time.perf_counter() - t0)
        pin.drive_low()
        time.sleep(gap_s)
    return values


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
        for line in sys.stdin:  # "TRIGGERS GAP_S" per measurement; EOF: stop
            triggers, gap_s = line.split()
            values = measure(factory.pin(PIR_PIN), session_factory, int(triggers), float(gap_s))
            print(json.dumps(values), flush=True)
    finally:
        runtime.close()
        factory.close()
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
