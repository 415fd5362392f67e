"""``seal-verify`` as a user runs it: the verdict in Chinese and English or JSON, the exit status, and that it loads
nothing of the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seal_verify.cli import main
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world, read_members, resign, write_members

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> tuple[CourtWorld, Path]:
    world = build_world(session_factory, database_url, tmp_path)
    return world, world.export(CASE_A, tmp_path / "case.zip").path


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_verifier_imports_no_server_module(bundle: tuple[CourtWorld, Path]) -> None:
    _, path = bundle
    script = (
        "import sys, seal_verify\n"
        f"verdict = seal_verify.verify_bundle({str(path)!r})\n"
        "assert verdict.ok, verdict.text()\n"
        "loaded = sorted(m for m in sys.modules if m == 'server' or m.startswith('server.'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_exit_status_and_readable_verdicts(
    bundle: tuple[CourtWorld, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world, path = bundle
    key = world.log_key.verifier()
    assert main([str(path), "--log-key", key]) == 0
    text = capsys.readouterr().out
    assert "全部检查通过" in text and "every check holds" in text and "封条对事件的签名" in text

    assert main([str(path), "--json", "--log-key", key]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["ok"] is True and verdict["anchored"] is True and verdict["facts"]["case_no"] == CASE_A
    assert {c["name"]: c["status"] for c in verdict["checks"]}["event_signatures"] == "ok"

    members = read_members(path)
    members["events.jsonl"] = members["events.jsonl"].replace(b'"armed":true', b'"armed":false', 1)
    forged = write_members(tmp_path / "forged.zip", resign(members, world.log_key))
    assert main([str(forged), "--json"]) == 1
    failed = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in failed["checks"] if c["status"] == "failed"] == [
        "event_signatures",
        "hash_chains",
        "inclusion",
    ]

    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert main([str(tmp_path / "junk.zip")]) == 1
    assert "未通过" in capsys.readouterr().out
    assert main([str(path), "--known-checkpoint", str(tmp_path / "absent.txt")]) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_kept_checkpoint_and_a_proof_file_from_the_server(
    bundle: tuple[CourtWorld, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint newer than the bundle's needs a proof from the bundle's size to it (the server's route form)."""
    from server.evidence import log

    world, path = bundle
    old_size = json.loads(read_members(path)["manifest.json"])["checkpoint_size"]
    world.send("a1")
    with world.session_factory() as session:
        row = log.make_checkpoint(session, world.log_key)
        assert row is not None
        session.commit()
        newer, size = row.note, row.tree_size
        proof = [h.hex() for h in log.consistency_proof(session, old_size, size)]
    (tmp_path / "newer.txt").write_text(newer, encoding="utf-8")
    assert main([str(path), "--known-checkpoint", str(tmp_path / "newer.txt")]) == 3  # not compared: no proof yet
    out = capsys.readouterr().out
    assert "larger than the bundle's" in out and f"GET /api/log/consistency?old={old_size}&new={size}" in out
    (tmp_path / "proof.json").write_text(json.dumps({"old_size": old_size, "new_size": size, "proof": proof}))
    args = [str(path), "--known-checkpoint", str(tmp_path / "newer.txt"), "--consistency-proof"]
    assert main([*args, str(tmp_path / "proof.json")]) == 0  # the kept checkpoint anchors the key
    bad = proof[:-1] + ["00" * 32]
    (tmp_path / "bad.json").write_text(json.dumps({"old_size": old_size, "new_size": size, "proof": bad}))
    assert main([*args, str(tmp_path / "bad.json")]) == 1
