"""How many verified events per second the court commits, against a bare subscriber in the same run. By hand:

    .venv/bin/python bench/ingest.py [--seals 100] [--events 100] [--rate 1000] [--rate-events 60] [--prefill N]
                                     [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

What runs: a private Mosquitto with the court's configuration and the generated ACL (:mod:`seal_dev.broker`); N
simulated seals in this process (:mod:`ingest_load`), each its own MQTT client with its own account, password and
Ed25519 key, registered and bound to a case in the court's database; the real ``seal-server run`` as its own process
(SQLite in the run's directory, or a fresh schema on ``--database-url``), with the court's command key, so every
committed batch is receipted.

1. Baseline: ``bench/bare_subscriber.py`` (own process, the court's account) takes the stream of N × events signed
   heartbeats (about 577 bytes, QoS 1) published as fast as paho takes them: its receive rate, the median of
   ``--baseline-runs`` runs (3). No court runs.
2. Throughput: the same bytes, the same way, into ``seal-server run``: events/s from the first publish to the last
   receipt (a receipt is sent after the batch's commit and acknowledgement), and the ratio to the baseline.
3. Latency: ``--rate-events`` more events per seal at ``--rate`` events/s in all: publish → committed p50/p99 (each
   event's row as first seen by a process polling the court's database every 2–10 ms, :mod:`ingest_pir`; with one
   ingest worker) and publish → receipt (which adds the receipt's signing, its trip and this process's handling of
   it); meanwhile a real ``SealRuntime`` on mock pins (:mod:`ingest_pir`, a process of its own) is triggered every
   0.25 s: PIR edge → its ``intrusion`` row in the court's database (seen by an observer of its own), also measured on
   the idle court before.

Then the database is checked: every event stored once (0 lost, 0 duplicated), nothing quarantined. CPU seconds of
each process (Mosquitto, the subscriber or the court, this load generator) are read from /proc per phase.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import bench_support  # noqa: F401 - puts the checkout on sys.path for seal_dev
from bare_subscriber import BareProcess
from bench_support import Series, machine
from cpu import WORKERS, CpuMeter
from ingest_load import BenchSeal, Fleet, fresh_database, prefill
from ingest_pir import POLL_S, ROWS_POLL_S, PirProbe
from sqlalchemy import func, select

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess
from server.core.db import session_scope
from server.evidence.models import Event
from server.ingest.models import QuarantinedMessage
from server.seals.broker_files import SERVER_USERNAME
from server.seals.cases import add_case
from server.seals.registry import register_seal

CASE = "(2021)苏0214执1234号"
#: Events per seal the court takes before it is measured (:func:`warm_up`).
WARM_UP = 1


@contextmanager
def more_workers(court: CourtProcess, count: int) -> Iterator[subprocess.Popen[bytes] | None]:
    """``seal-server ingest --workers count`` beside the court (its settings already name a shared group)."""
    if count == 0:
        yield None
        return
    env = dict(os.environ, PYTHONPATH=str(bench_support.ROOT))
    command = [sys.executable, "-m", "server.cli", "ingest", "--config", str(court.config_path)]
    log = (court.directory / "workers.log").open("ab")
    process = subprocess.Popen([*command, "--workers", str(count)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(8)  # the workers start and subscribe (the bench has no other way to know)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def bare_rate(root: Path, broker: PrivateBroker, fleet: Fleet, events: int) -> float:
    expected = len(fleet.seals) * events
    bare = BareProcess(root, broker.port, broker.users[SERVER_USERNAME], expected)
    assert broker._process is not None
    meter = CpuMeter({"mosquitto": broker._process.pid, "bare subscriber": bare.pid, "load": os.getpid()})
    start, end = fleet.publish(1, events)
    count, last = bare.result()
    cpu = meter.report()
    bare.stop()
    rate = count / (last - start)
    print(f"baseline: bare paho subscriber received {count}/{expected} in {last - start:.2f} s: {rate:,.0f} msg/s")
    print(f"  published in {end - start:.2f} s; {cpu}")
    return rate


@contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """py-spy (``pip install py-spy``; not a dependency of the product) samples ``pid`` meanwhile, if ``output``."""
    if output is None:
        yield
        return
    # --gil: only the thread holding the GIL is sampled, so the shares are of the court's Python time
    spy_path = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # the venv's, not on PATH
    command = [spy_path, "record", "--gil", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    command += ["--output", str(output)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
        print(f"  py-spy profile of the court (collapsed stacks): {output}")


def warm_up(fleet: Fleet, count: int) -> None:
    """``count`` events per seal into the court before it is measured, then a pause: the first large batch starts
    the court's verifier process ([mqtt] verifier_process), which takes most of a second to get ready (meanwhile
    the ingest checks signatures itself); the measure is of the court as it runs, not as it starts."""
    wanted = {seal.hashes[i] for seal in fleet.seals for i in range(count)}
    fleet.publish(1, count)
    if not fleet.wait_receipts(wanted, timeout=120):
        raise TimeoutError("the warm-up's events were not receipted")
    time.sleep(2.0)
    print(f"court: warmed up with {len(wanted)} events")


def court_rate(
    court: CourtProcess,
    fleet: Fleet,
    first: int,
    events: int,
    baseline: float,
    profile: Path | None,
    workers: int | None,
) -> None:
    assert court.process is not None and court.broker._process is not None
    pids = {"mosquitto": court.broker._process.pid, "court": court.process.pid, "load": os.getpid()}
    if workers is not None:
        pids[WORKERS] = workers
    wanted = {seal.hashes[i] for seal in fleet.seals for i in range(first - 1, first - 1 + events)}
    with profiled(court.process.pid, profile):
        meter = CpuMeter(pids, database_url=court.database_url)
        start, end = fleet.publish(first, first - 1 + events)
        if not fleet.wait_receipts(wanted, timeout=600):
            raise TimeoutError(f"not every event was receipted: {court.log_tail()}")
    last = max(fleet.receipted[h] for h in wanted)
    rate = len(wanted) / (last - start)
    print(f"court: {len(wanted)} events verified, committed and receipted in {last - start:.2f} s: {rate:,.0f}/s")
    print(f"  ratio to the bare subscriber: {rate / baseline:.2f}; published in {end - start:.2f} s; {meter.report()}")


def commit_buckets(court: CourtProcess) -> dict[float, float]:
    """The court's receive → commit histogram (``/metrics``): cumulative count per upper bound in seconds."""
    with urllib.request.urlopen(f"{court.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("seal_ingest_commit_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def commit_row(before: dict[float, float], after: dict[float, float]) -> str:
    """What share of the phase's events the court committed within each bound, from receiving them."""
    total = after[float("inf")] - before.get(float("inf"), 0)
    shares = [
        f"<= {1000 * bound:g} ms {100 * (after[bound] - before.get(bound, 0)) / total:.1f} %"
        for bound in sorted(after)
        if bound <= 0.25
    ]
    return f"receive -> commit (seal-server run's own histogram, {total:.0f} messages): " + ", ".join(shares)


def latency(
    court: CourtProcess,
    fleet: Fleet,
    phase: tuple[int, int, float],
    probe: PirProbe | None,
    profile: Path | None,
    workers: int,
) -> None:
    """Events ``first``..``last`` of each seal at ``rate`` per second in all (``phase``): publish → committed (seen by
    the observer of :mod:`ingest_pir`; one ingest worker only), publish → receipt, and PIR edge → row meanwhile."""
    first, last, rate = phase
    assert court.process is not None and court.broker._process is not None
    meter = CpuMeter(
        {"mosquitto": court.broker._process.pid, "court": court.process.pid, "load": os.getpid()},
        database_url=court.database_url,
    )
    buckets = commit_buckets(court)
    pir = Series(f"PIR edge -> intrusion row in the court's database, under {rate:g} events/s")
    gap_s = 0.25
    triggers = max(1, int((last - first + 1) * len(fleet.seals) / rate / (gap_s + 0.05)) - 2)
    wanted = [seal.hashes[i] for seal in fleet.seals for i in range(first - 1, last)]
    if probe is not None:  # with one ingest writer only: the probe reads rows in id order (bench/ingest_pir.py)
        probe.begin(triggers, gap_s, until_rows=len(wanted) if workers == 1 else 0)
    with profiled(court.process.pid, None if profile is None else profile.with_suffix(".latency.txt")):
        start, end = fleet.publish(first, last, rate=rate)
    if not fleet.wait_receipts(set(wanted), timeout=300):
        raise TimeoutError(f"not every event was receipted: {court.log_tail()}")
    pir_legs = (Series("  of which PIR edge -> received by the court"), Series("  of which received -> row seen"))
    seen = {} if probe is None else probe.result(pir, pir_legs)
    achieved = len(wanted) / (end - start)
    if seen:
        committed = Series(f"publish -> committed at {achieved:,.0f} events/s (target {rate:g})")
        committed.values = [
            seen[(seal.device_id, seq)] - fleet.published[seal.hashes[seq - 1]]
            for seal in fleet.seals
            for seq in range(first, last + 1)
        ]
        print(committed.row(target_ms=50))
        print(
            f"  (seen in the database by the observer's process, polling every {1000 * POLL_S:g}–{1000 * ROWS_POLL_S:g}"
            " ms: an upper bound)"
        )
    series = Series(f"publish -> receipt at {achieved:,.0f} events/s (target {rate:g})")
    series.values = [fleet.receipted[h] - fleet.published[h] for h in wanted]
    print(series.row(target_ms=50 if not seen else None))
    for row in legs(court, fleet, first, last):
        print(row.row())
    print(commit_row(buckets, commit_buckets(court)))
    if pir.values:
        print(pir.row(target_ms=50))
        for leg in pir_legs:
            print(leg.row())
    print(f"  {meter.report()}")


def legs(court: CourtProcess, fleet: Fleet, first: int, last: int) -> list[Series]:
    """Where publish -> receipt went, per event: publish -> the court's receive time (``events.received_at``, taken
    in paho's callback; one clock, one machine), and that receive -> the receipt back in this process (the court's
    batch and commit, the receipt's signing and trip through the broker, and this process's own handling of it)."""
    ours = {(seal.device_id, seq): seal.hashes[seq - 1] for seal in fleet.seals for seq in range(first, last + 1)}
    query = select(Event.device_id, Event.seq, Event.received_at).where(
        Event.device_id.in_({seal.device_id for seal in fleet.seals}), Event.seq.between(first, last)
    )
    to_court = Series("  of which publish -> received by the court")
    to_receipt = Series("  of which received by the court -> receipt back")
    with court.session_factory() as session:
        for device_id, seq, received_at in session.execute(query):
            digest = ours[(device_id, seq)]
            at = received_at.timestamp()
            to_court.values.append(at - fleet.published[digest])
            to_receipt.values.append(fleet.receipted[digest] - at)
    return [to_court, to_receipt]


def check_database(court: CourtProcess, seals: list[BenchSeal]) -> bool:
    expected = sum(len(seal.messages) for seal in seals)
    ours = Event.device_id.in_([seal.device_id for seal in seals])
    with court.session_factory() as session:
        stored = session.scalar(select(func.count()).select_from(Event).where(ours))
        pairs = select(Event.device_id, Event.seq).where(ours).distinct().subquery()
        distinct = session.scalar(select(func.count()).select_from(pairs))
        quarantined = session.scalar(select(func.count()).select_from(QuarantinedMessage))
    lost = expected - int(distinct or 0)
    duplicated = int(stored or 0) - int(distinct or 0)
    print(
        f"database: {stored} events stored of {expected} sent: {lost} lost, {duplicated} duplicated; "
        f"{quarantined} quarantined"
    )
    return lost == 0 and duplicated == 0 and quarantined == 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seals", type=int, default=100, help="simulated seals, each its own client and key")
    parser.add_argument("--events", type=int, default=100, help="events per seal in the throughput phases")
    parser.add_argument("--rate", type=float, default=1000, help="events/s in all in the latency phase")
    parser.add_argument("--rate-events", type=int, default=60, help="events per seal in the latency phase")
    parser.add_argument("--batch-size", type=int, default=500, help="the court's [mqtt] batch_size")
    parser.add_argument("--baseline-runs", type=int, default=3, help="bare subscriber runs (their median)")
    parser.add_argument("--linger-ms", type=float, help="the court's [mqtt] batch_linger_ms (default: its default)")
    parser.add_argument(
        "--no-verifier-process",
        dest="verifier_process",
        action="store_false",
        help="the court's [mqtt] verifier_process = false (every signature checked in the ingest's thread)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="ingest processes in all: seal-server run and N-1 `ingest` workers"
    )
    parser.add_argument("--prefill", type=int, default=0, help="events stored (other seals) before the run")
    parser.add_argument("--no-pir", dest="pir", action="store_false", help="no real seal (PIR edge -> row)")
    parser.add_argument("--profile", type=Path, help="write py-spy's collapsed stacks of the court's throughput here")
    parser.add_argument("--database-url", help="a PostgreSQL URL (a fresh schema is made there); default SQLite")
    args = parser.parse_args(argv)

    seals = [BenchSeal(f"seal-bench-{n:05d}", CASE) for n in range(args.seals)]
    t0 = time.monotonic()
    for seal in seals:
        seal.make_events(WARM_UP + args.events + args.rate_events)
    sizes = sorted(len(m) for seal in seals for m in seal.messages)
    gc.freeze()  # the generator's signed events live to the end: its own collections' pauses are not the court's
    print(f"ingest bench on {machine()}")
    print(
        f"{args.seals} seals, {args.events} + {args.rate_events} signed heartbeats each "
        f"({sizes[len(sizes) // 2]} bytes median), made in {time.monotonic() - t0:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as work, fresh_database(args.database_url) as url:
        root = Path(work)
        broker = PrivateBroker(root / "broker", {SERVER_USERNAME: uuid.uuid4().hex})
        broker.users.update({seal.device_id: seal.password for seal in seals})
        broker.start()
        court = CourtProcess(root / "court", broker, extra_settings="", database=url)
        mqtt = f"batch_size = {args.batch_size}"
        if args.linger_ms is not None:
            mqtt += f"\nbatch_linger_ms = {args.linger_ms}"
        if not args.verifier_process:
            mqtt += "\nverifier_process = false"
        if args.workers > 1:
            mqtt += '\nshared_group = "court-ingest"\ngap_wait_s = 1.0'
        settings = court.config_path.read_text().replace("batch_size = 200", mqtt)
        court.config_path.write_text(settings)
        fleet = None
        probe: PirProbe | None = None
        ok = False
        stack = ExitStack()
        try:
            with session_scope(court.session_factory) as session:
                add_case(session, actor=None, case_no=CASE, court="无锡市新吴区人民法院")
                for seal in seals:
                    register_seal(
                        session, actor=None, device_id=seal.device_id, case_no=CASE, public_key=seal.public_key
                    )
            if args.prefill:
                t0 = time.monotonic()
                prefill(court.session_factory, CASE, args.prefill)
                print(f"database: {args.prefill} events stored beforehand in {time.monotonic() - t0:.0f} s")
            print(f"database: {court.database_url.split('?')[0]}; court batch_size {args.batch_size}")
            fleet = Fleet(seals, broker.port)
            fleet.wait_connected(120)
            # the bare subscriber's rate is the publisher's, which wanders by ±25 % from run to run: the median of a
            # few runs (the same bytes each time; the court has seen none of them)
            rates = sorted(bare_rate(root, broker, fleet, args.events) for _ in range(args.baseline_runs))
            baseline = rates[len(rates) // 2]
            runs = ", ".join(f"{rate:,.0f}" for rate in rates)
            print(f"baseline: median of {len(rates)} runs {baseline:,.0f} msg/s (runs: {runs})")
            court.start()
            extra = stack.enter_context(more_workers(court, args.workers - 1))
            if args.pir:
                probe = PirProbe(root / "pir-seal", broker, court, CASE)
                probe.start()
            warm_up(fleet, WARM_UP)
            workers = None if extra is None else extra.pid
            court_rate(court, fleet, WARM_UP + 1, args.events, baseline, args.profile, workers)
            if probe is not None:
                idle = Series("PIR edge -> intrusion row in the court's database, idle court")
                probe.begin(20, 0.25)
                probe.result(idle)
                print(idle.row(target_ms=50))
            first = WARM_UP + args.events + 1
            phase = (first, first - 1 + args.rate_events, args.rate)
            latency(court, fleet, phase, probe, args.profile, args.workers)
            ok = check_database(court, seals)
        finally:
            stack.close()
            if probe is not None:
                probe.close()
            if fleet is not None:
                fleet.close()
            court.close()
            broker.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
