"""Events a seal signed in ``seal-agent simulate`` mode carry ``"simulated": true`` (docs/protocol.md, "Simulated
seals"): the bundle's report and seal-verify's verdict mark each such event and count them, Chinese first (review:
the dashboard marked them, but the report printed for the court and seal-verify's output did not — a simulated
intrusion read as a real one)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from seal_protocol import EventType
from seal_protocol.envelope import SIMULATED_FIELD
from seal_verify import verify_bundle
from server.core.db import SessionFactory, session_scope
from server.seals.registry import register_seal
from tests.server.helpers import CASE_A, SimulatedSeal
from tests.server.test_report_pdf import pdf_text
from tests.verify.world import CourtWorld, build_world, read_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    world = build_world(session_factory, database_url, tmp_path)
    simulated = SimulatedSeal("seal-sim", CASE_A)  # a seal run by seal-agent simulate, bound to the case
    with session_scope(session_factory) as session:
        register_seal(
            session, actor=None, device_id=simulated.device_id, case_no=CASE_A, public_key=simulated.public_key
        )
    world.seals["sim"] = simulated
    return world


def _simulated(payload: dict) -> dict:
    """The payload as a seal in simulate mode signs it (seal_agent.journal.recorder)."""
    return {**payload, SIMULATED_FIELD: True}


def _exported(world: CourtWorld, tmp_path: Path) -> dict[str, bytes]:
    world.send("sim", EventType.AGENT_STARTED, _simulated({"agent_version": "1.0", "armed": True, "outbox_depth": 0}))
    world.send("sim", EventType.INTRUSION, _simulated({"armed": True, "warning": "failed", "snapshots": []}))
    world.send("a1", EventType.INTRUSION, {"armed": True, "warning": "failed", "snapshots": [], "simulated": False})
    world.send("a1", EventType.TAMPER, {"state": "open", "armed": True, "snapshots": [], "simulated": "true"})
    return read_members(world.export(CASE_A, tmp_path / "case.zip").path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seal_verify_counts_and_lists_simulated_events(world: CourtWorld, tmp_path: Path) -> None:
    members = _exported(world, tmp_path)
    verdict = verify_bundle(tmp_path / "case.zip", log_key=world.log_key.verifier())
    assert verdict.trusted, verdict.text()
    check = verdict.check("event_signatures")
    assert "2 of them signed by a simulated seal" in check.summary and "其中 2 个为模拟事件" in check.summary
    listed = [n for n in check.notes if n.startswith("模拟事件 / simulated: ")]
    assert [re.search(r"\((seal-[a-z0-9]+#\d+, \w+)", n)[1] for n in listed] == [  # type: ignore[index]
        "seal-sim#1, agent_started",
        "seal-sim#2, intrusion",
    ], check.notes
    assert verdict.facts["simulated_events"].startswith("2 个模拟事件 / 2 simulated"), verdict.facts
    text = verdict.text()
    assert "simulated_events: 2 个模拟事件" in text and "模拟事件 / simulated: line" in text, text
    assert json.loads(json.dumps(verdict.as_json()))["facts"]["simulated_events"].startswith("2 ")
    lines = members["events.jsonl"].splitlines()
    simulated_lines = [n for n, line in enumerate(lines, 1) if b'"simulated":true' in line]
    assert [int(re.search(r"line (\d+)", n)[1]) for n in listed] == simulated_lines  # type: ignore[index]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bundle_without_simulated_events_says_nothing_of_them(world: CourtWorld, tmp_path: Path) -> None:
    world.send("a1", EventType.INTRUSION, {"armed": True, "warning": "failed", "snapshots": []})
    path = world.export(CASE_A, tmp_path / "case.zip").path
    verdict = verify_bundle(io.BytesIO(path.read_bytes()), log_key=world.log_key.verifier())
    assert "simulated_events" not in verdict.facts and "simulated" not in verdict.text(), verdict.text()
    report = pdf_text(read_members(path)["report.pdf"])
    assert "模拟" not in report and "simulated" not in report, report


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_report_marks_simulated_events(world: CourtWorld, tmp_path: Path) -> None:
    report = pdf_text(_exported(world, tmp_path)["report.pdf"])  # without white space
    # the cover: how many, and what they are
    assert (
        "模拟事件simulated2：模拟封条所签（seal-agentsimulate，模拟引脚），并非现场实际发生/signedbyasimulatedseal"
        in report
    )
    # the timeline: the simulated intrusion marked, Chinese first, with what it means; the real one not
    assert report.count("intrusion(motionsensor)模拟事件/simulated模拟封条所签（seal-agentsimulate，模拟引脚），") == 1
    assert report.count("模拟事件/simulated") == 2, report  # its agent_started too, and no event of seal-a1
    # the counts: the simulated seal's events counted apart, and in all
    assert "有人进入（人体感应）（模拟事件）intrusion(motionsensor)(simulated)1" in report, report
    assert "其中模拟事件（模拟封条所签，并非现场实际发生）ofwhichsimulated(asimulatedseal's:notonsite)2" in report, (
        report
    )
    # the alarm the simulated intrusion raised
    assert "seal-sim入侵（模拟事件）Intrusion(simulated)" in report.split("告警Alarms")[-1], report
    # seal-verify's verdict, as the report states it
    assert "其中2个为模拟事件" in report, report
