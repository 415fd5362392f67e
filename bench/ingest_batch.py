"""What one ingest transaction costs, the court's `Ingestor` alone: no broker, no receipts, no other process.

Batches of signed heartbeats (``--events`` of ``--seals`` seals each, as `bench/ingest.py`'s fleet signs them) go
through :meth:`server.ingest.ingestor.Ingestor.ingest` on a new database, one after another; printed: the wall time and
this process's CPU time per batch (median and p90 of the measured batches, the first ``--warm-up`` left out), and the
database server's share (wall minus CPU, when the database is another process). The verifier process is not used
(batches are checked in this thread, as the court does at 1,000 events/s, where batches are small).

    .venv/bin/python bench/ingest_batch.py                                   # SQLite, 20 events of 20 seals
    .venv/bin/python bench/ingest_batch.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/ingest_batch.py --events 100 --seals 100 --batches 200
    .venv/bin/python bench/ingest_batch.py --database-url … --statements --round-trips   # where a batch's time goes

On PostgreSQL the run uses a schema of its own, dropped at the end (`ingest_load.fresh_database`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench_support  # noqa: F401 - puts the checkout on sys.path
from ingest_load import BenchSeal, fresh_database

from seal_protocol import event_topic
from server.core.db import make_engine, make_session_factory, session_scope
from server.core.metrics import IngestMetrics
from server.ingest.ingestor import Ingestor
from server.ingest.results import Message, Outcome
from server.migrations.run import init_db
from server.seals.cases import add_case
from server.seals.registry import register_seal

CASE = "(2026)苏0214执1234号"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="PostgreSQL (a schema of its own is made there); default: SQLite")
    parser.add_argument("--events", type=int, default=20, help="events per batch (20)")
    parser.add_argument("--seals", type=int, default=20, help="distinct seals per batch (20)")
    parser.add_argument("--batches", type=int, default=300, help="batches measured (300)")
    parser.add_argument("--warm-up", type=int, default=20, help="batches before those measured (20)")
    parser.add_argument("--statements", action="store_true", help="also time each SQL statement of a batch")
    parser.add_argument(
        "--round-trips", action="store_true", help="PostgreSQL: also time a trivial statement, alone and pipelined"
    )
    args = parser.parse_args(argv)
    if args.events % args.seals:
        parser.error("--events must be a multiple of --seals")
    rounds = (args.warm_up + args.batches) * args.events // args.seals
    seals = [BenchSeal(f"seal-batch-{n:04d}", CASE) for n in range(args.seals)]
    started = time.monotonic()
    for seal in seals:
        seal.make_events(rounds)
    print(f"{args.seals} seals, {rounds} signed heartbeats each, made in {time.monotonic() - started:.1f} s")
    with tempfile.TemporaryDirectory(prefix="ingest-batch-") as tmp, fresh_database(args.database_url) as schema:
        url = schema or f"sqlite:///{Path(tmp) / 'court.db'}"
        engine = make_engine(url)
        init_db(engine)
        factory = make_session_factory(engine)
        timings = timed_statements(engine) if args.statements else None
        trips = round_trips(engine) if args.round_trips and engine.dialect.name == "postgresql" else None
        with session_scope(factory) as session:
            add_case(session, actor=None, case_no=CASE, court="无锡市新吴区人民法院")
            for seal in seals:
                register_seal(session, actor=None, device_id=seal.device_id, case_no=CASE, public_key=seal.public_key)
        ingestor = Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=Path(tmp) / "snapshots")
        per_seal = args.events // args.seals
        walls: list[float] = []
        cpus: list[float] = []
        try:
            for n in range(args.warm_up + args.batches):
                first = n * per_seal
                messages = [
                    Message(event_topic(seal.device_id), seal.messages[first + i], datetime.now(UTC))
                    for i in range(per_seal)
                    for seal in seals
                ]
                wall, cpu = time.perf_counter(), time.process_time()
                results = ingestor.ingest(messages)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                if any(result.outcome is not Outcome.STORED for result in results):
                    raise SystemExit(
                        f"batch {n}: not all stored: {[r for r in results if r.outcome is not Outcome.STORED][:3]}"
                    )
                if n >= args.warm_up:
                    walls.append(wall * 1000)
                    cpus.append(cpu * 1000)
                elif timings is not None:
                    timings.clear()
        finally:
            ingestor.close()
            engine.dispose()
    backend = url.split(":", 1)[0]
    print(f"{backend}: {args.batches} batches of {args.events} events of {args.seals} seals")
    print(f"  wall per batch  median {statistics.median(walls):6.2f} ms  p90 {percentile(walls, 0.9):6.2f} ms")
    print(f"  CPU here        median {statistics.median(cpus):6.2f} ms  p90 {percentile(cpus, 0.9):6.2f} ms")
    waits = [w - c for w, c in zip(walls, cpus, strict=True)]
    print(f"  wall - CPU      median {statistics.median(waits):6.2f} ms  (the database server's work, and waits)")
    print(
        f"  per event: wall {statistics.median(walls) / args.events * 1000:.0f} µs, CPU here "
        f"{statistics.median(cpus) / args.events * 1000:.0f} µs"
    )
    if trips is not None:
        print(
            f"  a trivial statement's round trip: {trips[0]:.0f} µs one after another, {trips[1]:.0f} µs each in "
            "psycopg's pipeline mode (what pipelining could save a statement at most)"
        )
    if timings is not None:
        print("  statements per batch (median ms each, in the order of their first execution):")
        for statement, took in timings.items():
            line = " ".join(statement.split())[:100]
            print(f"  {len(took) / args.batches:5.1f} × {statistics.median(took):6.3f} ms  {line}")
    return 0


def round_trips(engine: Any, n: int = 2000) -> tuple[float, float]:
    """µs per ``SELECT 1`` on one of ``engine``'s connections: each answer read before the next is sent, and all
    sent at once in psycopg's pipeline mode (the answers read at its end)."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.autocommit = True
        for _ in range(100):
            conn.execute("SELECT 1").fetchall()
        started = time.perf_counter()
        for _ in range(n):
            conn.execute("SELECT 1").fetchall()
        alone = (time.perf_counter() - started) / n * 1e6
        started = time.perf_counter()
        with conn.pipeline():
            for _ in range(n):
                conn.execute("SELECT 1")
        pipelined = (time.perf_counter() - started) / n * 1e6
        conn.autocommit = False
    finally:
        raw.close()
    return alone, pipelined


def timed_statements(engine: Any) -> dict[str, list[float]]:
    """Each statement's text -> how long each of its executions took (ms), from SQLAlchemy's cursor events."""
    from sqlalchemy import event

    timings: dict[str, list[float]] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        took = (time.perf_counter() - conn.info.pop("bench_started")) * 1000
        timings.setdefault(statement, []).append(took)

    @event.listens_for(engine, "commit")
    def commit(conn: Any) -> None:
        conn.info["bench_commit"] = time.perf_counter()

    return timings


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
