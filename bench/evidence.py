"""Bench of the evidence export and the offline verifier: a case with 10,000 events and 1,000 snapshots.

    .venv/bin/python bench/evidence.py [--events 10000] [--snapshots 1000] [--seals 10] [--keep]

The events are signed by simulated seals (Ed25519, hash-chained, as ``seal_agent`` signs them) and stored through
the real ingest (``Ingestor``, in batches of 100 as the MQTT loop hands them over) into a SQLite database made by the
migrations; every tenth event of a seal is an intrusion naming one snapshot, whose JPEG is ingested too. Then
``export_case`` writes the bundle (as ``seal-server export`` does) and ``verify_bundle`` checks it (as
``seal-verify`` does; also timed as a fresh ``python -m seal_verify`` process). Goal: verification under 10 s.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from seal_protocol import (  # noqa: E402
    EventType,
    encode_envelope,
    envelope_hash,
    event_topic,
    new_envelope,
    snapshot_topic,  # noqa: E402
)
from seal_protocol.signing import SigningKey, generate_signing_key, public_key_b64, sign_envelope  # noqa: E402
from seal_verify import verify_bundle  # noqa: E402
from server.core.db import make_engine, make_session_factory, session_scope  # noqa: E402
from server.core.metrics import IngestMetrics  # noqa: E402
from server.evidence.checkpoints import LogKey  # noqa: E402
from server.evidence.snapshot_files import SnapshotStore  # noqa: E402
from server.export.service import ExportConfig, export_case  # noqa: E402
from server.ingest.ingestor import Ingestor  # noqa: E402
from server.ingest.results import Message  # noqa: E402
from server.migrations.run import init_db  # noqa: E402
from server.removal.proofs import ProofStore  # noqa: E402
from server.seals.cases import add_case  # noqa: E402
from server.seals.registry import register_seal  # noqa: E402

CASE = "(2026)苏0214执1号"
BATCH = 100


class Seal:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.key: SigningKey = generate_signing_key()
        self.seq = 0
        self.prev: str | None = None

    def event(self, type: EventType, payload: dict[str, object]) -> Message:
        self.seq += 1
        envelope = new_envelope(
            device_id=self.device_id, case_no=CASE, seq=self.seq, type=type, payload=payload, prev_hash=self.prev
        )
        data = encode_envelope(sign_envelope(envelope, self.key))
        self.prev = envelope_hash(data)
        return Message(event_topic(self.device_id), data, datetime.now(UTC))


def picture(n: int) -> bytes:
    """A distinct 320x240 JPEG (noise: about the size of a seal camera's small snapshot)."""
    out = io.BytesIO()
    Image.frombytes("RGB", (320, 240), random.Random(n).randbytes(320 * 240 * 3)).save(out, "JPEG", quality=70)
    return out.getvalue()


def fill(ingestor: Ingestor, seals: list[Seal], events: int, snapshots: int) -> None:
    every = max(1, events // max(1, snapshots))
    pending: list[Message] = []
    made = 0
    for n in range(events):
        seal = seals[n % len(seals)]
        if made < snapshots and n % every == every - 1:
            data = picture(made)
            sha = hashlib.sha256(data).hexdigest()
            payload: dict[str, object] = {"armed": True, "warning": "played", "snapshots": [sha]}
            pending.append(seal.event(EventType.INTRUSION, payload))  # the event first, then its picture
            pending.append(Message(snapshot_topic(seal.device_id, sha), data, datetime.now(UTC)))
            made += 1
        else:
            pending.append(seal.event(EventType.HEARTBEAT, {"armed": True, "uptime_s": n}))
        if len(pending) >= BATCH:
            ingestor.ingest(pending)
            pending = []
    if pending:
        ingestor.ingest(pending)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--snapshots", type=int, default=1_000)
    parser.add_argument("--seals", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("server.export.report").setLevel(logging.INFO)  # the report's render time
    work = Path(tempfile.mkdtemp(prefix="bench-evidence-"))
    try:
        return run(args, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    engine = make_engine(f"sqlite:///{work / 'court.db'}")
    init_db(engine)
    factory = make_session_factory(engine)
    seals = [Seal(f"seal-bench-{i}") for i in range(args.seals)]
    with session_scope(factory) as session:
        add_case(session, actor=None, case_no=CASE, court="无锡市滨湖区人民法院", judge="王法官")
        for seal in seals:
            register_seal(
                session, actor=None, device_id=seal.device_id, case_no=CASE, public_key=public_key_b64(seal.key)
            )
    started = time.perf_counter()
    fill(
        Ingestor(factory, metrics=IngestMetrics(), snapshot_dir=work / "snapshots"), seals, args.events, args.snapshots
    )
    ingested = time.perf_counter() - started

    key = LogKey(work / "log.key", "bench.invalid/log")
    started = time.perf_counter()
    with factory() as session:
        result = export_case(
            session,
            case_no=CASE,
            target=work / "case.zip",
            log_key=key,
            config=ExportConfig(
                SnapshotStore(work / "snapshots"), ProofStore(work / "removal-proofs"), timedelta(seconds=180)
            ),
            actor=None,
            exported_by="bench",
        )
    exported = time.perf_counter() - started
    started = time.perf_counter()
    verdict = verify_bundle(result.path, log_key=key.verifier())
    verified = time.perf_counter() - started
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "seal_verify", str(result.path), "--log-key", key.verifier()]
    cli = subprocess.run(command, env=env, capture_output=True)  # without the key pinned it would exit 3
    verified_cli = time.perf_counter() - started
    engine.dispose()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"case: {result.events} events of {args.seals} seals, {result.snapshots} snapshots")
    print(f"ingest (real Ingestor, SQLite):   {ingested:7.2f} s")
    print(f"export (export_case):             {exported:7.2f} s   bundle {result.path.stat().st_size / 2**20:.1f} MiB")
    print(f"verify (verify_bundle in-process): {verified:6.2f} s   ok={verdict.ok}")
    print(f"verify (python -m seal_verify):   {verified_cli:7.2f} s   exit {cli.returncode}")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(f"goal: verify < 10 s: {'met' if verified_cli < 10 and verdict.ok else 'MISSED'}")
    if not verdict.ok:
        print(verdict.text())
    return 0 if verdict.ok and cli.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
