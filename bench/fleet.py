"""A court's whole fleet at once, and a reconnect storm. Run by hand, not part of the tests:

    .venv/bin/python bench/fleet.py [--seals 2000] [--storm-seals 1000] [--storm-events 100]
                                    [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

What runs: as ``bench/ingest.py`` (its own Mosquitto with the court's configuration: passwords hashed with
PBKDF2-SHA512 at ``server.seals.broker_files.PBKDF2_ITERATIONS`` rounds, the generated ACL; ``seal-server run``;
simulated seals, each its own MQTT client, account and key, spread over member processes of 250:
:mod:`fleet_procs`).

1. Baseline (no court yet): the bare subscriber (``bench/bare_subscriber.py``) takes a storm of ``--storm-seals``
   seals reconnecting at once, each sending ``--storm-events`` buffered events: the time it takes to receive it.
2. The court: all ``--seals`` seals connect at once (time until the last CONNACK), each sends a heartbeat (time
   until the last receipt); then ``--storm-seals`` of them disconnect and come back at once with their buffered
   events (what an outbox holds after an outage): time to reconnect them, time until the last receipt, against the
   baseline. The database must then hold every event once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import bench_support  # noqa: F401 - puts the checkout on sys.path for seal_dev
from bare_subscriber import BareProcess
from bench_support import machine
from cpu import CpuMeter
from fleet_procs import PER_PROCESS, ProcessFleet
from ingest import CASE, check_database, fresh_database
from ingest_load import BenchSeal

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess
from server.core.db import session_scope
from server.seals.broker_files import PBKDF2_ITERATIONS, SERVER_USERNAME
from server.seals.cases import add_case
from server.seals.registry import register_seal

#: Seals connecting at a time in each member process, so that the connect rate measured is what the broker sustains.
WAVE = 50


def connect(seals: list[BenchSeal], port: int, what: str) -> ProcessFleet:
    t0 = time.monotonic()
    fleet = ProcessFleet(seals, port, wave=WAVE)
    fleet.wait_connected(1200)
    elapsed = time.monotonic() - t0
    print(
        f"{what}: {len(seals)} seals connected in {elapsed:.1f} s ({len(seals) / elapsed:.0f} CONNECTs/s; "
        f"{PER_PROCESS} per process, waves of {WAVE})"
    )
    return fleet


def storm_events(seals: list[BenchSeal]) -> int:
    return sum(len(seal.messages) - 1 for seal in seals)


def bare_storm(root: Path, broker: PrivateBroker, storm: list[BenchSeal]) -> float:
    """The storm into the bare subscriber; its duration from the first reconnect to the last message received."""
    expected = storm_events(storm)
    bare = BareProcess(root, broker.port, broker.users[SERVER_USERNAME], expected)
    assert broker._process is not None
    meter = CpuMeter({"mosquitto": broker._process.pid, "bare subscriber": bare.pid, "load": os.getpid()})
    start = time.time()
    fleet = connect(storm, broker.port, "baseline storm")
    fleet.publish(2, len(storm[0].messages))
    count, last = bare.result()
    print(f"  {meter.report()}")
    bare.stop()
    fleet.close()
    print(
        f"baseline: bare subscriber received {count}/{expected} storm events {last - start:.1f} s after the storm "
        f"began ({count / (last - start):,.0f}/s)"
    )
    return last - start


def court_phase(court: CourtProcess, seals: list[BenchSeal], storm: list[BenchSeal], baseline_s: float) -> None:
    assert court.process is not None and court.broker._process is not None
    pids = {"mosquitto": court.broker._process.pid, "court": court.process.pid, "load": os.getpid()}
    fleet = connect(seals, court.broker.port, "court")
    t0 = time.time()
    fleet.publish(1, 1)
    last = fleet.wait_receipts(1, 1, timeout=600)
    if last is None:
        raise TimeoutError(f"not every heartbeat was receipted: {court.log_tail()}")
    within = last - t0
    print(f"court: a heartbeat from each of {len(seals)} seals receipted within {within:.1f} s")
    fleet.close()  # the storm's seals drop off (an outage); the others' heartbeats are done
    meter = CpuMeter(pids, database_url=court.database_url)
    start = time.time()
    storm_fleet = connect(storm, court.broker.port, "court storm")
    storm_fleet.publish(2, len(storm[0].messages))
    last = storm_fleet.wait_receipts(2, len(storm[0].messages), timeout=1800)
    if last is None:
        raise TimeoutError(f"the storm was not receipted: {court.log_tail()}")
    drained, wanted = last - start, storm_events(storm)
    print(
        f"court: storm of {wanted} events from {len(storm)} seals verified, committed and receipted "
        f"{drained:.1f} s after it began ({wanted / drained:,.0f}/s); x{drained / baseline_s:.1f} the bare "
        f"subscriber's time"
    )
    print(f"  {meter.report()}")
    storm_fleet.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seals", type=int, default=2000, help="seals connected at once")
    parser.add_argument("--storm-seals", type=int, default=1000, help="seals that reconnect at once with a backlog")
    parser.add_argument("--storm-events", type=int, default=100, help="events each storm seal has buffered")
    parser.add_argument("--batch-size", type=int, default=500, help="the court's [mqtt] batch_size")
    parser.add_argument("--database-url", help="a PostgreSQL URL (a fresh schema is made there); default SQLite")
    args = parser.parse_args(argv)

    t0 = time.monotonic()
    seals = [BenchSeal(f"seal-fleet-{n:05d}", CASE) for n in range(args.seals)]
    storm = seals[: args.storm_seals]
    for seal in seals:
        seal.make_events(1 + (args.storm_events if seal in storm else 0))
    print(f"fleet bench on {machine()}")
    print(
        f"{args.seals} seals, {args.storm_seals} of them with {args.storm_events} buffered events; PBKDF2 "
        f"{PBKDF2_ITERATIONS} rounds per password; made in {time.monotonic() - t0:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as work, fresh_database(args.database_url) as url:
        root = Path(work)
        broker = PrivateBroker(root / "broker", {SERVER_USERNAME: uuid.uuid4().hex})
        t1 = time.monotonic()
        broker.users.update({seal.device_id: seal.password for seal in seals})
        broker.start()
        print(f"broker: {len(broker.users)} accounts hashed and written in {time.monotonic() - t1:.1f} s")
        court = CourtProcess(root / "court", broker, database=url)
        settings = court.config_path.read_text().replace("batch_size = 200", f"batch_size = {args.batch_size}")
        court.config_path.write_text(settings)
        ok = False
        try:
            with session_scope(court.session_factory) as session:
                add_case(session, actor=None, case_no=CASE, court="无锡市新吴区人民法院")
                for seal in seals:
                    register_seal(
                        session, actor=None, device_id=seal.device_id, case_no=CASE, public_key=seal.public_key
                    )
            baseline_s = bare_storm(root, broker, storm)
            court.start()
            court_phase(court, seals, storm, baseline_s)
            ok = check_database(court, seals)
        finally:
            court.close()
            broker.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
