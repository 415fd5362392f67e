"""A checkpoint fetched from the public ``GET /api/log/checkpoint`` anchors a later bundle (docs/evidence.md,
"What anchors a bundle"), by a consistency proof anyone may fetch too (review F3/F4). The bundle keeps proofs only
from earlier exports' checkpoints and each day's last: from a checkpoint fetched mid-day it has none. seal-verify
failed such an untouched bundle (exit 1), and ``GET /api/log/consistency`` needed a login the debtor, the applicant
or their lawyer does not have. Now the verdict is "not anchored" (exit 3) naming the proof to fetch, anyone may fetch
it, and with it the bundle is trusted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from seal_verify import Status, verify_bundle
from seal_verify.cli import main
from server.app import create_app
from server.core.db import SessionFactory
from server.evidence import log
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world, read_members

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _checkpoint(world: CourtWorld) -> None:
    """The checkpointer's round: the log's current size signed."""
    with world.session_factory() as session:
        assert log.make_checkpoint(session, world.log_key) is not None
        session.commit()


@SQLITE
def test_a_bundle_checked_against_a_fetched_checkpoint_is_unanchored_until_the_public_proof_is_given(
    world: CourtWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _checkpoint(world)
    with TestClient(create_app(world.settings, with_ingest=False)) as anyone:  # nobody logged in
        fetched = anyone.get("/api/log/checkpoint")
        assert fetched.status_code == 200
        (tmp_path / "fetched.txt").write_bytes(fetched.content)
        old = int(fetched.text.split("\n")[1])
        world.send("a1")
        world.send("b1")
        _checkpoint(world)  # the same day's next round: the fetched checkpoint is no day's last
        world.send("a1")
        bundle = world.export(CASE_A, tmp_path / "a.zip").path
        new = json.loads(read_members(bundle)["manifest.json"])["checkpoint_size"]
        assert old < new

        verdict = verify_bundle(bundle, known_checkpoint=fetched.content)
        assert verdict.ok and not verdict.anchored, verdict.text()
        assert verdict.check("known_checkpoint").status is Status.ABSENT
        hint = f"GET /api/log/consistency?old={old}&new={new}"
        assert hint in verdict.unproven and hint in verdict.text()
        kept = [str(bundle), "--known-checkpoint", str(tmp_path / "fetched.txt")]
        assert main(kept) == 3
        # a pinned key anchors the bundle, but the comparison asked for was not made: not 0 either
        assert main([*kept, "--log-key", world.log_key.verifier()]) == 3
        assert hint in capsys.readouterr().out

        proof = anyone.get("/api/log/consistency", params={"old": old, "new": new})
        assert proof.status_code == 200, proof.text
    (tmp_path / "proof.json").write_bytes(proof.content)
    assert main([*kept, "--consistency-proof", str(tmp_path / "proof.json")]) == 0
    wrong = {**proof.json(), "proof": ["00" * 32, *proof.json()["proof"][1:]]}
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    assert main([*kept, "--consistency-proof", str(tmp_path / "wrong.json")]) == 1
