"""No PDF the court prints silently differs from the text it was given: a character its font cannot draw (a rare
CJK character such as 𠀀, U+20000; an emoji) or a text direction control (U+202E) refuses the seal notice, whose
facts are signed, and is shown as ``〔U+20000〕`` in the evidence report, which says so once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.cli import main
from server.core.db import SessionFactory, make_engine, make_session_factory, session_scope
from server.export.report import HistoryEntry, RemovalFacts, render_report
from server.export.report_timeline import wrap
from server.notices.errors import UnprintableFact
from server.notices.facts import NoticeFacts
from server.notices.fonts import find_font, register_font
from server.notices.models import Notice
from server.notices.pdf import PrintedNotice, render_notice_pdf
from server.pdf_glyphs import Glyphs
from server.seals.cases import add_case, add_court, update_case
from server.seals.registry import register_seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import COURT_CODE, COURT_NAME, COURT_PHONE, SimulatedSeal, notice_facts
from tests.server.test_notice_cli import write_config
from tests.server.test_report_pdf import T0, facts, pdf_text

CASE = f"(2021){COURT_CODE}执4321号"
DEVICE = "seal-0007"
FACTS = NoticeFacts(
    court="无锡市滨湖区人民法院",
    court_phone="0510-1",
    case_no="(2026)苏0211执1234号",
    judge="张三",
    judge_phone="138",
    sealed_on="2026-12-01",
    property="房屋一套",
    address="滨湖区某路1号",
    seizure_expires_on="2029-11-30",
    device_id="seal-a1",
    ruling_no="(2026)苏0211执1234号之一",
)
NOTE_ZH = "原文以证据包中的JSON文件为准"
NOTE_EN = "theexacttextisinthebundle'sJSONfiles"


def font() -> str:
    return register_font(find_font(None))


def notice_pdf(notice_facts: NoticeFacts) -> bytes:
    return render_notice_pdf(PrintedNotice(notice_facts, 1, date(2026, 12, 6), "https://c.example/notice/x"), font())


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("judge", "张𠀀", "U+20000"),
        ("address", "滨湖区🏠某路1号", "U+1F3E0"),
        ("address", "滨湖区\u202e路1号", "U+202E"),
        ("court", "无锡市\u2066滨湖区人民法院", "U+2066"),
    ],
)
def test_a_notice_with_a_character_its_font_cannot_draw_is_not_printed(field: str, value: str, code: str) -> None:
    with pytest.raises(UnprintableFact) as refused:
        notice_pdf(replace(FACTS, **{field: value}))
    message = str(refused.value)
    assert (refused.value.field, f"U+{ord(refused.value.char):04X}") == (field, code)
    assert message.startswith("公告无法打印") and f"({field})" in message and code in message
    assert message.index("The notice cannot be printed") > message.index("公告无法打印")


def test_a_notice_the_font_can_draw_prints_every_fact_as_given() -> None:
    text = pdf_text(notice_pdf(FACTS))
    for value in (FACTS.court, FACTS.judge, FACTS.address, FACTS.property, FACTS.case_no):
        assert value in text
    assert "U+" not in text


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    with session_scope(session_factory) as session:
        add_court(session, actor=None, code=COURT_CODE, name=COURT_NAME, phone=COURT_PHONE)
        add_case(
            session, actor=None, case_no=CASE, judge="张法官", **notice_facts(CASE) | {"address": "无锡市滨湖区某路1号"}
        )
        register_seal(
            session, actor=None, device_id=DEVICE, case_no=CASE, public_key=SimulatedSeal(DEVICE, CASE).public_key
        )
    add_user(session_factory, "clerk", Role.CLERK)
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as test_client:
        yield test_client


def test_the_api_refuses_the_notice_naming_the_field_and_records_no_notice(
    client: TestClient, session_factory: SessionFactory
) -> None:
    with session_scope(session_factory) as session:
        update_case(session, actor=None, case_no=CASE, changes={"judge": "张𠀀"})
    response = client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=bearer(session_factory, "clerk"))
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert (
        detail.startswith("公告无法打印：“执行法官”（judge）") and "U+20000" in detail and "Enforcement judge" in detail
    )
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Notice)) == 0
        assert not session.scalars(select(AuditEntry).where(AuditEntry.action.like("notice.%"))).all()
    with session_scope(session_factory) as session:
        update_case(session, actor=None, case_no=CASE, changes={"judge": "张法官"})
    assert client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=bearer(session_factory, "clerk")).status_code == 200


def test_the_report_shows_what_its_font_cannot_draw_by_code_point_and_says_so_once() -> None:
    note = "申请执行人不同意：被执行人张𠀀仍欠款🏠，见\u202e附件"
    removal = RemovalFacts(
        id=7, ground="paid_in_full", state="submitted", filed_by="debtor-a", filed_at=T0,
        history=[HistoryEntry(at=T0 + timedelta(minutes=1), actor="creditor-a", action="comment", note=note)],
    )  # fmt: skip
    text = pdf_text(render_report(facts(removals=[removal])))
    assert "被执行人张〔U+20000〕仍欠款〔U+1F3E0〕，见〔U+202E〕附件" in text
    assert text.count(NOTE_ZH) == 1 and text.count(NOTE_EN) == 1
    assert "〔U+202E〕、〔U+1F3E0〕、〔U+20000〕（共3种）" in text


def test_a_report_its_font_draws_whole_has_no_note() -> None:
    text = pdf_text(render_report(facts()))
    assert NOTE_ZH not in text and "〔U+" not in text


def test_every_way_the_report_sets_text_shows_the_placeholder() -> None:
    glyphs = Glyphs(font())
    assert "".join(wrap("封条𠀀位置", glyphs, 40.0).split()) == "封条〔U+20000〕位置"
    assert glyphs.drawable("第一行\n第二行") == "第一行\n第二行"  # a line break is laid out, not drawn
    assert glyphs.undrawable("a\u2067b\u2069c") == ["\u2067", "\u2069"]  # isolates are shown, never applied
    assert glyphs.replaced == {"𠀀"}


def test_the_cli_refuses_the_notice_naming_the_field(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = write_config(tmp_path, database_url, public_base_url="https://seal.court.example")
    assert main(["init-db", "--config", str(config)]) == 0
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            add_court(session, actor=None, code=COURT_CODE, name=COURT_NAME, phone=COURT_PHONE)
            facts = notice_facts(CASE) | {"address": "滨湖区🏠某路1号"}
            add_case(session, actor=None, case_no=CASE, judge="张法官", **facts)
            register_seal(
                session, actor=None, device_id=DEVICE, case_no=CASE, public_key=SimulatedSeal(DEVICE, CASE).public_key
            )
    finally:
        engine.dispose()
    assert main(["notice-key", "--config", str(config)]) == 0
    out = tmp_path / "notice.pdf"
    assert main(["notice", DEVICE, "-o", str(out), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "“财产所在地”（address）" in err and "U+1F3E0" in err and not out.exists()
