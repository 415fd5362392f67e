"""Bench of the evidence export's memory: the peak RSS of one export of a case of 100,000 signed events.

    .venv/bin/python bench/export_memory.py [--events 100000] [--seals 10] [--database-url URL]

The case is filled in bulk with real signed envelopes (:mod:`seal_dev.case_events`: heartbeats a minute apart, an
intrusion and its warning's outcome every 50 events of a seal), into a SQLite database made by the migrations (or the
empty PostgreSQL database ``--database-url`` names). Then, in this process, the peak RSS is reset
(``/proc/self/clear_refs``, Linux) and ``export_case`` writes the bundle as ``seal-server export`` does; the figures
printed are the RSS before, the peak during the export, and the time it took.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from seal_dev.case_events import fill_case  # noqa: E402
from server.core.db import make_engine, make_session_factory  # noqa: E402
from server.evidence.checkpoints import LogKey  # noqa: E402
from server.evidence.snapshot_files import SnapshotStore  # noqa: E402
from server.export.service import ExportConfig, export_case  # noqa: E402
from server.migrations.run import init_db  # noqa: E402
from server.removal.proofs import ProofStore  # noqa: E402

CASE = "(2026)苏0214执2号"


def _status(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: now, VmHWM: the peak since the last reset)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seals", type=int, default=10)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite in a temporary dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("server.export.report").setLevel(logging.INFO)
    work = Path(tempfile.mkdtemp(prefix="bench-export-memory-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    engine = make_engine(args.database_url or f"sqlite:///{work / 'court.db'}")
    init_db(engine)
    factory = make_session_factory(engine)
    started = time.perf_counter()
    fill_case(factory, CASE, args.events, seals=args.seals)
    filled = time.perf_counter() - started
    config = ExportConfig(SnapshotStore(work / "snapshots"), ProofStore(work / "proofs"), timedelta(seconds=180))
    gc.collect()
    _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    with factory() as session:
        result = export_case(
            session,
            case_no=CASE,
            target=work / "case.zip",
            log_key=LogKey(work / "log.key", "bench.invalid/log"),
            config=config,
            actor=None,
            exported_by="bench",
        )
    exported = time.perf_counter() - started
    peak = _status("VmHWM")
    engine.dispose()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {engine.dialect.name}")
    print(f"case: {result.events} events of {args.seals} seals (filled in {filled:.1f} s)")
    print(f"export: {exported:.1f} s, bundle {result.path.stat().st_size / 2**20:.1f} MiB, verified={result.verified}")
    print(f"RSS before the export: {before / 1024:7.0f} MiB")
    print(f"peak RSS during it:    {peak / 1024:7.0f} MiB (+{(peak - before) / 1024:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
