"""Work that grew with the product of two parts of a bundle, each within its bounds: events times a seal's keys,
gaps in a chain times a seal's bindings. Made without the log key (the manifest fails; every check still runs), so
a forger could hand seal-verify a bundle of a few megabytes that it would check for hours."""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from seal_protocol import canonical_json
from tests.verify.world import Exported, export_once, join, lines, zip_members

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Exported:
    return export_once(tmp_path_factory.mktemp("bundle"), migrated_sqlite)


def _events(exported: Exported, count: int, *, step: int = 1) -> bytes:
    """``count`` events of seal-a1 (seq 1, 1 + step, ...; their signatures verify with no key): envelopes that
    decode, as many as a forger likes."""
    first = next(json.loads(line) for line in lines(exported.members["events.jsonl"]) if b'"seal-a1"' in line)
    made = []
    for n in range(count):
        event = {**first, "seq": 1 + n * step, "event_id": str(uuid.UUID(int=n + 1)), "type": "heartbeat"}
        made.append(canonical_json({**event, "payload": {"armed": True}, "prev_hash": None if n == 0 else "0" * 64}))
    return join(made)


def _seal(exported: Exported, **changes: object) -> bytes:
    return canonical_json({**json.loads(exported.members["seals/seal-a1.json"]), **changes})


def _verify_within(exported: Exported, members: dict[str, bytes], tmp_path: Path, seconds: int) -> str:
    bundle = tmp_path / "work.zip"
    bundle.write_bytes(zip_members(members).getvalue())

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))

    try:
        done = subprocess.run(
            [sys.executable, "-m", "seal_verify", str(bundle), "--log-key", exported.log_key],
            capture_output=True,
            text=True,
            timeout=seconds,
            preexec_fn=bounded,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"seal-verify took more than {seconds} s")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stdout


def test_events_times_a_seals_keys_is_bounded(exported: Exported, tmp_path: Path) -> None:
    """Each event whose signature does not verify was tried with every key of its seal's record: 2,000 events and
    5,000 keys are ten million Ed25519 checks (some ten minutes). A seal has at most MAX_SEAL_KEYS keys; after
    1,000 events that no key verifies, the rest are tried with the seal's current key only."""
    keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(5000)]
    enrolment = [{"actor": "-", "at": "2026-12-04T09:30:00.000Z", "case_no": "x", "public_key": k} for k in keys]
    members = {
        **exported.members,
        "events.jsonl": _events(exported, 2000),
        "seals/seal-a1.json": _seal(exported, enrolment=enrolment),
    }
    out = _verify_within(exported, members, tmp_path, 60)
    assert "more than 64 keys" in out, out[-3000:]
    members["seals/seal-a1.json"] = _seal(exported, enrolment=enrolment[:64])  # 64 keys: public_key is none of them
    members["events.jsonl"] = _events(exported, 5000)
    out = _verify_within(exported, members, tmp_path, 60)
    assert "0 of 5000 event signatures verify" in out and "checked with the seal's current key only" in out, out


def test_gaps_times_a_seals_bindings_is_bounded(exported: Exported, tmp_path: Path) -> None:
    """Each gap in a chain read every binding of the seal's record and parsed its time: 5,000 gaps and 200,000
    bindings are a billion times parsed (hours). The unbinding times are read once, each gap looks them up."""
    binding = {"bound_at": "2026-12-04T09:30:00.000Z", "bound_by": None, "unbound_by": None}
    bindings = [{**binding, "unbound_at": f"2020-01-01T00:00:{n % 60:02d}.{n % 1000:03d}Z"} for n in range(200_000)]
    members = {
        **exported.members,
        "events.jsonl": _events(exported, 5000, step=2),
        "seals/seal-a1.json": _seal(exported, bindings=bindings),
    }
    out = _verify_within(exported, members, tmp_path, 60)
    assert "seal-a1: seq 2 missing" in out, out[-3000:]


def test_a_path_listed_many_times_in_the_manifest_is_hashed_once(exported: Exported, tmp_path: Path) -> None:
    """Each entry of the manifest's files hashed its member: report.pdf of 64 MiB listed 10,000 times is 640 GB
    to hash (no key needed: the manifest's signature fails, the check still runs). A member is hashed once."""
    head = json.loads(exported.members["manifest.json"])
    entry = {"path": "report.pdf", "sha256": "0" * 64, "size": 1}
    members = {
        **exported.members,
        "report.pdf": bytes(64 * 2**20),
        "manifest.json": canonical_json({**head, "files": [*head["files"], *[entry] * 10_000]}),
    }
    out = _verify_within(exported, members, tmp_path, 60)
    assert "a path is listed twice" in out, out[-3000:]
