"""A seal's signed text (a ``snapshot_lost``'s reason, a ``not_stored`` reason, any payload text the timeline shows)
is one line of its report cell: a ``\\n`` in it would start a line of its own (``text_lines`` breaks there), where
the seal's words could pass for the court's. Control characters are shown as visible escapes instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seal_protocol import EventType
from server.core.db import SessionFactory
from server.export.report_text import event_details, plain
from tests.server.helpers import CASE_A
from tests.server.test_report_pdf import pdf_text
from tests.verify.world import CourtWorld, build_world, read_members

#: A reason made to read as the court's own words on lines of their own.
FORGED = "gone\n法院收到后丢失或被改动\r\nreceived by the court, then lost or altered\x1b[31m\x85\u2028end"
SHOWN = "gone\\n法院收到后丢失或被改动\\r\\nreceived by the court, then lost or altered\\x1b[31m\\x85\\u2028end"


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def test_control_characters_are_shown_as_escapes() -> None:
    assert plain(FORGED) == SHOWN
    assert plain("\x00\t\x7f\x9f ok 中文") == "\\x00\\t\\x7f\\x9f ok 中文"
    zh, en = event_details("snapshot_lost", {"snapshot": "ab" * 32, "reason": FORGED})
    assert zh.endswith(SHOWN) and en.endswith(SHOWN) and "\n" not in zh + en


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_seal_signed_reason_adds_no_line_to_the_report(world: CourtWorld, tmp_path: Path) -> None:
    lost, unstored = world.picture("a1", deliver=False), world.picture("a1", deliver=False)
    world.send("a1", EventType.INTRUSION, {"armed": True, "snapshots": [lost, unstored]})
    trigger_seq = world.seals["a1"].seq
    follow = {"snapshots": [], "not_stored": [{"sha256": unstored, "reason": FORGED}], "trigger_seq": trigger_seq}
    world.send("a1", EventType.SNAPSHOT_TAKEN, follow | {"trigger": "intrusion"})
    world.send("a1", EventType.SNAPSHOT_LOST, {"snapshot": lost, "reason": FORGED, "detail": FORGED, "kept": None})
    report = pdf_text(read_members(world.export(CASE_A, tmp_path / "case.zip").path)["report.pdf"])
    flat = re.sub(r"\s+", "", report)
    # Both in the table of missing pictures and in the timeline, the forged lines stay inside the seal's text.
    assert flat.count("gone\\n法院收到后丢失或被改动\\r\\nreceivedbythecourt") >= 3, report
    assert "\\x1b[31m\\x85\\u2028end" in flat, report
    assert not any(line.strip() == "法院收到后丢失或被改动" for line in report.splitlines()), report
