"""A time stamp checked without ``--tsa-root`` is checked only against the chain the bundle carries, which whoever
made the bundle may have made: ``seal-verify`` shows it as ``unanchored`` (a warning), not ``ok``, its time labelled
as the unpinned TSA's claim, and the verdict no longer reads "every check holds" (the exit status stays 0 for a
bundle whose log key is pinned: a claim proves no forgery). Here the server, which holds the log key, stamps its
checkpoint with a TSA of its own making, dated as it likes, and re-signs the bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from seal_dev.tsa import make_tsa_pki, sign_query
from seal_verify import Status, verify_bundle
from seal_verify.cli import main
from server.core.db import SessionFactory
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world, read_members, resign, write_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def test_a_self_made_time_stamp_is_unanchored_not_ok(
    world: CourtWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    own = make_tsa_pki(tmp_path / "own-tsa", name="Trusted Time Authority")
    note = members["log/checkpoint.txt"]
    query = TimestampRequestBuilder().data(note).hash_algorithm(HashAlgorithm.SHA256).cert_request(cert_request=True)
    stamped = {
        **members,
        "log/checkpoint.tsr": sign_query(own, query.build().as_bytes()),
        "log/tsa-chain.pem": own.tsa_pem.read_bytes() + own.ca_pem.read_bytes(),
    }
    forged = write_members(tmp_path / "forged.zip", resign(stamped, world.log_key))
    key = world.log_key.verifier()

    verdict = verify_bundle(forged, log_key=key)
    assert verdict.trusted, verdict.text()
    stamp = verdict.check("timestamp")
    assert stamp.status is Status.UNANCHORED and verdict.warnings == ["timestamp"]
    assert "claimed by an unpinned TSA" in verdict.facts["timestamp"]
    assert "⚠ 未锚定 unanchored" in verdict.text() and "every check holds" not in verdict.text()
    assert main([str(forged), "--log-key", key, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["warnings"] == ["timestamp"]
    assert next(c for c in out["checks"] if c["name"] == "timestamp")["status"] == "unanchored"

    pinned = verify_bundle(forged, log_key=key, tsa_roots_pem=make_tsa_pki(tmp_path / "court-tsa").ca_pem.read_bytes())
    assert pinned.failed == ["timestamp"]  # pinned to the court's TSA, the self-made token fails
    assert verify_bundle(forged, log_key=key, tsa_roots_pem=own.ca_pem.read_bytes()).check("timestamp").status is (
        Status.OK
    )
