"""``chain_ends``: a bundle re-signed by whoever holds the log key with a seal's last events (or every event) left
out passes every signature, chain and proof; ``seal-verify`` warns of it from what the bundle shows — a seal still
bound to the case whose chain ends hours before the export, unrecorded offline — and its verdict no longer reads
"every check holds". Genuine bundles of seals that speak up to the export, that were unbound, that the court records
offline, or of an export whose range ends earlier, are not warned of.

The court here is real (the ingest, the database, the export, the liveness check); only time is moved: the seals
were bound nine hours ago and their first events were received then (``Message.received_at``, the seal's ``ts``)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from seal_protocol import EventType
from seal_verify import Status, verify_bundle
from seal_verify.cli import main
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.export.gather import TimeRange
from server.ingest.ingestor import Ingestor
from server.ingest.liveness import LivenessChecker
from server.ingest.results import Message
from server.seals.models import SealBinding
from server.seals.registry import unbind_seal
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A, SimulatedSeal, register
from tests.server.test_report_pdf import pdf_text
from tests.verify.world import CourtWorld, build_world, join, lines, read_members, resign, write_members

EVERY_CHECK_HOLDS = "every check holds"


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    """Seals a1 and a2 bound to case A nine hours ago, each with three heartbeats a minute apart then, and one now."""
    seals = {"a1": SimulatedSeal("seal-a1", CASE_A), "a2": SimulatedSeal("seal-a2", CASE_A)}
    register(session_factory, *seals.values())
    then = utc_now() - timedelta(hours=9)
    with session_scope(session_factory) as session:
        session.execute(update(SealBinding).values(bound_at=then - timedelta(minutes=5)))
    settings = make_settings(database_url, tmp_path)
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=settings.snapshot_dir)
    world = CourtWorld(session_factory, settings, ingestor, seals)
    for name in ("a1", "a2"):
        for minute in range(3):
            at = then + timedelta(minutes=minute)
            data = seals[name].event(EventType.HEARTBEAT, {"armed": True}, at=at)
            ingestor.ingest([Message(seals[name].event_topic, data, at)])
    return world


def _heartbeat_now(world: CourtWorld, *names: str) -> None:
    for name in names:
        world.send(name)


def _without_last_event_of(members: dict[str, bytes], device_id: str) -> dict[str, bytes]:
    """The bundle with the seal's last event line (and its meta and proof lines) left out, as a forger would."""
    events = lines(members["events.jsonl"])
    last = max(i for i, line in enumerate(events) if f'"device_id":"{device_id}"'.encode() in line)
    cut = {name: lines(members[name]) for name in ("events.jsonl", "events-meta.jsonl", "log/proofs.jsonl")}
    return {**members, **{name: join(parts[:last] + parts[last + 1 :]) for name, parts in cut.items()}}


def test_a_seals_last_events_left_out_and_resigned_are_warned_of(world: CourtWorld, tmp_path: Path) -> None:
    _heartbeat_now(world, "a1", "a2")
    genuine = world.export(CASE_A, tmp_path / "case.zip").path
    key = world.log_key.verifier()
    verdict = verify_bundle(genuine, log_key=key)
    assert verdict.trusted and not verdict.warnings, verdict.text()
    assert verdict.check("chain_ends").status is Status.OK
    assert EVERY_CHECK_HOLDS in verdict.text()

    forged = write_members(
        tmp_path / "forged.zip", resign(_without_last_event_of(read_members(genuine), "seal-a1"), world.log_key)
    )
    verdict = verify_bundle(forged, log_key=key)
    assert verdict.ok and verdict.trusted  # no signature, chain or proof sees what is not there
    assert verdict.warnings == ["chain_ends"], verdict.text()
    ends = verdict.check("chain_ends")
    assert ends.status is Status.WARNING and len(ends.warnings) == 1
    assert "seal-a1" in ends.warnings[0] and "9.0 h before the export" in ends.warnings[0]
    assert "证据可能被截断" in ends.warnings[0] and "may be truncated" in ends.warnings[0]
    text = verdict.text()
    assert EVERY_CHECK_HOLDS not in text and "全部检查通过" not in text
    assert "⚠ 警告 WARNING" in text and "with WARNINGS (chain_ends)" in text


def test_the_cli_prints_the_warning_keeps_exit_0_and_names_it_in_the_json(
    world: CourtWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _heartbeat_now(world, "a1", "a2")
    genuine = world.export(CASE_A, tmp_path / "case.zip").path
    forged = write_members(
        tmp_path / "forged.zip", resign(_without_last_event_of(read_members(genuine), "seal-a2"), world.log_key)
    )
    key = world.log_key.verifier()
    assert main([str(forged), "--log-key", key, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trusted"] and out["warnings"] == ["chain_ends"]
    ends = next(c for c in out["checks"] if c["name"] == "chain_ends")
    assert ends["status"] == "warning" and "seal-a2" in ends["warnings"][0]
    assert main([str(forged), "--log-key", key]) == 0
    text = capsys.readouterr().out
    assert "封条 seal-a2 的最后事件" in text and EVERY_CHECK_HOLDS not in text


def test_a_bundle_with_every_event_left_out_is_warned_of(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    court = build_world(session_factory, database_url, tmp_path)  # seals bound now: no seal silent for long
    genuine = court.export(CASE_A, tmp_path / "case.zip").path
    members = read_members(genuine)
    events = len(lines(members["events.jsonl"]))
    emptied = {**members, "events.jsonl": b"", "events-meta.jsonl": b"", "snapshots.jsonl": b""}
    emptied["log/proofs.jsonl"] = join(lines(members["log/proofs.jsonl"])[events:])  # the audit lines' proofs
    emptied = {name: data for name, data in emptied.items() if not name.startswith("snapshots/")}
    forged = write_members(tmp_path / "forged.zip", resign(emptied, court.log_key))
    verdict = verify_bundle(forged, log_key=court.log_key.verifier())
    assert verdict.trusted, verdict.text()
    assert {c.name for c in verdict.checks if c.status is Status.ABSENT} >= {"event_signatures", "hash_chains"}
    assert verdict.warnings == ["chain_ends"]
    (warning,) = verdict.check("chain_ends").warnings
    assert "no event at all" in warning and "seal-a1" in warning and "seal-a2" in warning
    assert EVERY_CHECK_HOLDS not in verdict.text()


def test_a_seal_unbound_before_the_export_is_not_warned_of(world: CourtWorld, tmp_path: Path) -> None:
    _heartbeat_now(world, "a2")
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-a1")
    verdict = verify_bundle(world.export(CASE_A, tmp_path / "case.zip").path, log_key=world.log_key.verifier())
    assert verdict.trusted and not verdict.warnings, verdict.text()
    assert verdict.check("chain_ends").status is Status.OK
    assert EVERY_CHECK_HOLDS in verdict.text()


def test_a_seal_the_court_records_offline_is_stated_not_warned_of(world: CourtWorld, tmp_path: Path) -> None:
    _heartbeat_now(world, "a2")  # a1 fell silent nine hours ago; the court's liveness check raised its alarm
    checker = LivenessChecker(world.session_factory, offline_after_s=180, interval_s=15)
    assert checker.check() == ["seal-a1"]
    verdict = verify_bundle(world.export(CASE_A, tmp_path / "case.zip").path, log_key=world.log_key.verifier())
    assert verdict.trusted and not verdict.warnings, verdict.text()
    ends = verdict.check("chain_ends")
    assert ends.status is Status.OK
    assert any("seal-a1 offline since" in note and "9.0 h before the export" in note for note in ends.notes)


def test_a_silent_seal_unrecorded_offline_is_warned_of_even_in_a_genuine_bundle(
    world: CourtWorld, tmp_path: Path
) -> None:
    _heartbeat_now(world, "a2")  # the court's liveness check never ran: nothing records a1 offline
    result = world.export(CASE_A, tmp_path / "case.zip")
    verdict = verify_bundle(result.path, log_key=world.log_key.verifier())
    assert verdict.trusted and verdict.warnings == ["chain_ends"], verdict.text()
    (warning,) = verdict.check("chain_ends").warnings
    assert "seal-a1" in warning and "seq 3" in warning
    # the export's own report states the warning as one, not as a failed check
    assert result.verified
    report = "".join(pdf_text(read_members(result.path)["report.pdf"]).split())
    assert "0项未通过，1项警告" in report and "0failed,1withwarnings" in report and "警告WARNING" in report


def test_an_export_whose_range_ends_earlier_is_judged_at_its_end(world: CourtWorld, tmp_path: Path) -> None:
    _heartbeat_now(world, "a1", "a2")
    end = utc_now() - timedelta(hours=8, minutes=50)  # ten minutes after the old heartbeats
    verdict = verify_bundle(
        world.export(CASE_A, tmp_path / "case.zip", TimeRange(end=end)).path, log_key=world.log_key.verifier()
    )
    assert verdict.trusted and not verdict.warnings, verdict.text()
    assert "the end of the export's range" in verdict.check("chain_ends").summary


def test_an_export_of_a_range_with_no_event_yet_is_not_warned_of(world: CourtWorld, tmp_path: Path) -> None:
    _heartbeat_now(world, "a1", "a2")
    later = TimeRange(start=utc_now() + timedelta(days=365))  # a range that starts after the export: empty
    verdict = verify_bundle(world.export(CASE_A, tmp_path / "case.zip", later).path, log_key=world.log_key.verifier())
    assert verdict.trusted and not verdict.warnings, verdict.text()
    assert verdict.check("event_signatures").status is Status.ABSENT
