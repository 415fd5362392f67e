"""What a bundle says of the court's own records, as an adversary (or an accident) would leave them: a picture the
court received and then lost, a seal whose clock stepped back inside a range export, the order of the audit lines
and of the proofs, and a pinned log key spelt another way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from seal_protocol import EventType
from seal_verify import Status, verify_bundle
from seal_verify.cli import main
from server.core.db import SessionFactory, session_scope
from server.export.gather import TimeRange
from tests.server.helpers import CASE_A, add_test_case, message
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


@pytest.mark.parametrize("how", ["altered", "deleted"])
def test_a_received_picture_lost_from_the_store_is_exported_as_lost_and_fails(
    world: CourtWorld, tmp_path: Path, how: str
) -> None:
    sha = sorted(world.pictures)[0]
    (stored,) = [p for p in Path(world.settings.snapshot_dir).rglob(f"*{sha}*") if p.is_file()]
    if how == "altered":
        stored.write_bytes(b"\xff\xd8 another picture")
    else:
        stored.unlink()
    result = world.export(CASE_A, tmp_path / "case.zip")
    assert not result.verified
    members = read_members(result.path)
    (record,) = [json.loads(line) for line in lines(members["snapshots.jsonl"]) if json.loads(line)["sha256"] == sha]
    assert record["present"] is False and record["received_at"] is not None
    assert record["size"] == len(world.pictures[sha]) and f"snapshots/{sha}.jpg" not in members
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert not verdict.trusted and verdict.failed == ["snapshots"]
    check = verdict.check("snapshots")
    assert any("法院已于" in p and "missing or altered" in p and sha in p for p in check.problems)
    assert "1 张服务器收到后丢失或被改动" in check.summary and "1 received but lost or altered" in check.summary


@SQLITE
def test_a_range_export_keeps_a_chain_whole_when_the_seals_clock_stepped_back(
    world: CourtWorld, tmp_path: Path
) -> None:
    seal = world.seals["a2"]
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    sent = [seal.event(EventType.HEARTBEAT, {"armed": True}, at=now + timedelta(seconds=s)) for s in (0, -30, 1)]
    for data in sent:  # the clock stepped back 30 s, then NTP set it right
        world.ingestor.ingest([message(seal.event_topic, data)])
    result = world.export(CASE_A, tmp_path / "range.zip", TimeRange(now - timedelta(seconds=5), None))
    assert lines(read_members(result.path)["events.jsonl"]) == sent
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    assert any("封条时钟曾回拨" in note for note in verdict.check("event_case").notes)

    later = world.export(CASE_A, tmp_path / "later.zip", TimeRange(now + timedelta(seconds=1), None))
    assert lines(read_members(later.path)["events.jsonl"]) == sent[2:]  # no chain to keep whole: only the last


@SQLITE
def test_the_audit_lines_and_the_proofs_are_checked_in_their_order(world: CourtWorld, tmp_path: Path) -> None:
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    audit, proofs = lines(members["audit.jsonl"]), lines(members["log/proofs.jsonl"])
    assert len(audit) >= 2
    events_proofs, audit_proofs = proofs[: -len(audit)], proofs[-len(audit) :]
    audit_reversed = {  # the entries, their meta lines and their proofs, all in reverse
        "audit.jsonl": join(audit[::-1]),
        "audit-meta.jsonl": join(lines(members["audit-meta.jsonl"])[::-1]),
        "log/proofs.jsonl": join(events_proofs + audit_proofs[::-1]),
    }
    proofs_reversed = {"log/proofs.jsonl": join(proofs[::-1])}
    for forged, failed in ((audit_reversed, "audit"), (proofs_reversed, "inclusion")):
        path = write_members(tmp_path / "forged.zip", resign({**members, **forged}, world.log_key))
        verdict = verify_bundle(path, log_key=world.log_key.verifier())
        assert verdict.failed == [failed], verdict.text()
        assert any("order" in p or "not after" in p for p in verdict.check(failed).problems)


@SQLITE
def test_a_pinned_log_key_is_compared_as_a_key_not_as_text(world: CourtWorld, tmp_path: Path) -> None:
    path = world.export(CASE_A, tmp_path / "case.zip").path
    name, kid, key = world.log_key.verifier().split("+", 2)
    for spelt in (f"{name}+{kid.upper()}+{key}", f"{name}+{kid[:4]} {kid[4:]}+{key}", f" {name}+{kid}+{key}\n"):
        assert main([str(path), "--log-key", spelt]) == 0, spelt
    verdict = verify_bundle(path, log_key=f"{name}+{kid.upper()}+{key}")
    assert verdict.check("log_key").status is Status.OK


@SQLITE
def test_a_malformed_log_key_is_a_usage_error_and_a_kept_checkpoint_may_have_crlf_lines(
    world: CourtWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = world.export(CASE_A, tmp_path / "case.zip").path
    assert main([str(path), "--log-key", "nonsense"]) == 2
    assert "--log-key: not a verifier key" in capsys.readouterr().err
    kept = tmp_path / "kept.txt"  # saved on Windows
    kept.write_bytes(read_members(path)["log/checkpoint.txt"].replace(b"\n", b"\r\n"))
    assert main([str(path), "--known-checkpoint", str(kept)]) == 0


@SQLITE
def test_the_checks_of_a_case_without_events_read_absent_not_ok(world: CourtWorld, tmp_path: Path) -> None:
    with session_scope(world.session_factory) as session:
        add_test_case(session, "(2023)苏0214执7号")
    path = world.export("(2023)苏0214执7号", tmp_path / "empty.zip").path
    verdict = verify_bundle(path, log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    statuses = {c.name: c.status for c in verdict.checks}
    for name in ("event_signatures", "hash_chains", "event_meta", "snapshots"):
        assert statuses[name] is Status.ABSENT, name
    assert statuses["inclusion"] is Status.OK  # the case's own audit entry is proved
