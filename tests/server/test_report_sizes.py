"""The evidence report whatever the size of a case's parts: a removal request of 200 steps made through the real
service functions, many requests filed and withdrawn, the most proof files, the longest notes and reasons, a seal's
long answer; and, from facts alone, cells taller than a page. The report renders, lists every step, and where it
shortens a text it says so and names the bundle's file that holds all of it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from seal_verify import verify_bundle
from server.alarms.models import Alarm
from server.alarms.service import acknowledge_as, close_as
from server.auth.access import Role
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.export.report import AlarmFacts, Binding, HistoryEntry, RemovalFacts, SealFacts, render_report
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore, check_proof
from server.removal.service import add_view, cancel_request, file_request, reject_request, review_request
from server.removal.steps import get_request
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A
from tests.server.removal_world import pdf_bytes
from tests.server.test_report_pdf import KEY, T0, facts, pdf_text
from tests.verify.world import CourtWorld, build_world, read_members

VIEWS = 197  # with the filing, the review and the rejection: 200 steps
WITHDRAWN = 15  # requests filed and withdrawn before it
NOTE = "申请执行人不同意解除查封，理由如下。The creditor objects, for these reasons. " * 40  # cut to 500 when stored


def _file(world: CourtWorld, statement: str, proofs: int, now: datetime) -> int:
    files = [
        check_proof(
            pdf_bytes(f"receipt {n}"), filename=f"回单{n}.pdf", declared_type="application/pdf", max_bytes=1 << 20
        )
        for n in range(proofs)
    ]
    with session_scope(world.session_factory) as session:
        request = file_request(
            session,
            actor=get_user(session, username="debtor-a"),
            case_no=CASE_A,
            ground=RemovalGround.PAID_IN_FULL,
            statement=statement,
            proofs=files,
            store=ProofStore(world.settings.proof_dir),
            settings=RemovalSettings(proof_max_files=20, max_filings_per_day=1000),  # WITHDRAWN filings in a day
            now=now,
        )
        return request.id


def _oversized_case(world: CourtWorld) -> tuple[list[str], int]:
    """The case's removal requests (``WITHDRAWN`` filed and withdrawn, then one of 200 steps), its alarms closed
    with the longest notes, a seal's reason of 22,500 characters: the markers of every step, in order, and the id
    of the long request."""
    for name, role in (("debtor-a", Role.DEBTOR), ("creditor-a", Role.CREDITOR), ("judge-a", Role.JUDGE)):
        add_user(world.session_factory, name, role, (CASE_A,))
    start, markers = utc_now(), []
    for n in range(WITHDRAWN):
        at = start + timedelta(minutes=n)
        request_id = _file(world, f"第{n}次申请 filing{n:02d}z", 1, at)
        with session_scope(world.session_factory) as session:
            request, debtor = get_request(session, request_id=request_id), get_user(session, username="debtor-a")
            cancel_request(session, actor=debtor, request=request, note=f"撤回 withdrawn{n:02d}z", now=at)
        markers += [f"filing{n:02d}z", f"withdrawn{n:02d}z"]
    filed = start + timedelta(hours=1)
    long_id = _file(world, "债务已清偿 paid-in-full-z", 20, filed)
    markers.append("paid-in-full-z")
    with session_scope(world.session_factory) as session:
        request, creditor = get_request(session, request_id=long_id), get_user(session, username="creditor-a")
        for n in range(VIEWS):
            add_view(session, actor=creditor, request=request, text=f"view{n:03d}z {NOTE}", now=filed)
            markers.append(f"view{n:03d}z")
        judge = get_user(session, username="judge-a")
        review_request(session, actor=judge, request=request, note="受理 taken-up", now=filed)
        reasons = "reasons-begin 申请人未能证明债务已清偿。" + "不予准许。" * 790
        reject_request(session, actor=judge, request=request, reasons=reasons, now=filed)
        markers += ["taken-up", "reasons-begin"]
        for alarm in session.scalars(select(Alarm).where(Alarm.case_no == CASE_A)):
            acknowledge_as(session, actor=judge, alarm_id=alarm.id, note="现场查看。" * 400)
            close_as(session, actor=judge, alarm_id=alarm.id, note="已处理。" * 500)
    world.send("a1", EventType.CAMERA_LOST, {"reason": "no-frame " * 2500, "armed": True})
    return markers, long_id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_removal_request_of_200_steps_and_other_oversized_parts_are_all_in_the_report(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    markers, long_id = _oversized_case(world)
    result = world.export(CASE_A, tmp_path / "case.zip")
    assert result.verified and verify_bundle(result.path, log_key=world.log_key.verifier()).ok
    members = read_members(result.path)
    records = {r["id"]: r for r in map(json.loads, members["removal.jsonl"].splitlines())}
    assert len(records) == WITHDRAWN + 1 and len(records[long_id]["steps"]) == 200
    text = pdf_text(members["report.pdf"])
    removals = text.split("解除查封申请与决定")[-1].split("证据说明")[0]
    found = [removals.find(marker) for marker in markers]
    assert -1 not in found, [m for m, at in zip(markers, found, strict=True) if at == -1]
    assert found == sorted(found)  # every step, in the order it happened
    assert removals.count("申请执行人提出书面意见") == VIEWS
    # What is shortened says so and names the file that holds all of it.
    for where in ("removal.jsonl", "alarms.jsonl", "events.jsonl"):
        assert f"全文见{where}/fulltextin{where}" in text, where
    assert "不予准许。" * 790 in records[long_id]["steps"][-1]["note"]


def _tokens(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{n:05d}z" for n in range(count))


def test_a_cell_taller_than_a_page_splits_across_pages_and_keeps_every_line() -> None:
    """Cells the export bounds (a seal's location, a person's name, an alarm's history) set from facts far longer:
    each row splits where the page ends, nothing is left out and nothing is repeated."""
    location = _tokens("loc", 3000)  # about six pages in its column
    history = [HistoryEntry(T0, "judge.wang", "closed", f"note{n:04d}z") for n in range(400)]
    steps = [HistoryEntry(T0 + timedelta(seconds=n), "creditor", "comment", _tokens(f"s{n}x", 36)) for n in range(30)]
    report = facts(
        seals=[SealFacts("seal-01", KEY, T0, "admin", location, [Binding(T0, _tokens("who", 1500))])],
        alarms=[AlarmFacts(1, "seal-01", "tamper", "critical", "closed", T0, 1, history)],
        removals=[RemovalFacts(2, "paid", "submitted", "debtor.zhao", T0, steps, ["c" * 64])],
    )
    text = pdf_text(render_report(report))
    expected = [f"loc{n:05d}z" for n in range(3000)] + [f"who{n:05d}z" for n in range(1500)]
    expected += [f"note{n:04d}z" for n in range(400)]
    expected += [f"s{n}x{k:05d}z" for n in range(30) for k in range(36)]
    found = [text.find(token) for token in expected]
    assert [token for token in expected if text.count(token) != 1] == []  # each once: none left out, none repeated
    assert found == sorted(found)
