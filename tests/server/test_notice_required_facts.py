"""What every notice must say, found by a review of the printed texts: a notice was printed and posted with "未登记 /
not recorded" for the property, its address and the court's phone and "未载明 / not stated" for the seizure's term;
it named no ruling; its warning was narrower than 刑法第三百一十四条 and differed between the languages; its page
paraphrased the grounds for lifting a seizure wrongly and said nothing of a written objection.

Now no notice is issued or printed (API, page route, command line) while the case lacks a fact every notice prints
(server.notices.facts.REQUIRED_FACTS), and the seal page says which before anyone tries."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from server.cli import main
from server.core.db import make_engine, make_session_factory, session_scope
from server.notices.facts import REQUIRED_FACTS, NoticeFacts
from server.notices.models import Notice
from server.removal.grounds import GROUND_LABELS
from server.seals.cases import update_court
from server.seals.registry import register_seal
from tests.server.helpers import COURT_CODE, SimulatedSeal
from tests.server.test_notice_cli import write_config
from tests.server.test_notice_currency import printed
from tests.server.test_notices import CASE, DEVICE, RULING, World, pdf_text
from tests.server.test_notices import world as notices_world

world = notices_world  # the fixture of test_notices: a court with a phone, a case with every fact, its seal bound

#: How each required fact is erased (the court's phone on the court, the others on the case), and its name in the
#: refusal, Chinese and English (the catalogue's notice_fact words).
ERASE: dict[str, tuple[str, object, str, str]] = {
    "ruling_no": ("ruling_no", "", "执行裁定书文号", "the enforcement ruling's number"),
    "court_phone": ("phone", "", "法院电话", "the court's telephone"),
    "property": ("sealed_property", "", "查封财产", "the property sealed"),
    "address": ("address", "  ", "财产所在地", "where the property is"),
    "seizure_expires_on": ("seizure_expires_on", None, "查封期限", "the seizure's last day"),
}
PLACEHOLDERS = ("未登记", "notrecorded", "未载明", "notstated")
WARNING_ZH = "未经人民法院许可，隐藏、转移、变卖、毁损查封财产的，依法追究法律责任。"
WARNING_EN = "Concealing, transferring, selling or damaging the sealed property"


def erase(world: World, fact: str) -> None:
    column, value, _zh, _en = ERASE[fact]
    with session_scope(world.session_factory) as session:
        if fact == "court_phone":
            update_court(session, actor=None, code=COURT_CODE, changes={"phone": ""})
            return
    response = world.client.patch(f"/api/cases/{quote(CASE, safe='')}", json={column: value}, headers=world.headers())
    assert response.status_code == 200, response.text


def notices(world: World) -> int:
    with world.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Notice)) or 0


def test_every_required_fact_is_covered() -> None:
    assert set(ERASE) == set(REQUIRED_FACTS)


@pytest.mark.parametrize("fact", sorted(ERASE))
def test_no_notice_is_issued_while_a_fact_it_must_print_is_missing(world: World, fact: str) -> None:
    erase(world, fact)
    response = world.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers())
    assert response.status_code == 409, response.status_code
    detail = response.json()["detail"]
    _column, _value, zh, en = ERASE[fact]
    assert detail.index(zh) < detail.index(en), detail  # Chinese first, with English
    assert f"案件 {CASE} 的查封公告不能打印" in detail and "cannot be printed" in detail
    others = [ERASE[other][2] for other in ERASE if other != fact]
    assert not any(other in detail for other in others), detail  # names what is missing, nothing else
    assert notices(world) == 0


def test_a_notice_printed_before_is_not_printed_again_once_a_fact_is_gone(world: World) -> None:
    world.pdf()
    erase(world, "property")
    erase(world, "ruling_no")
    response = world.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers())
    assert response.status_code == 409
    assert "执行裁定书文号、查封财产" in response.json()["detail"]  # every missing fact, in the paper's order
    assert notices(world) == 1


def test_the_paper_names_the_ruling_and_the_whole_warning_in_both_languages(world: World) -> None:
    text = pdf_text(world.pdf())
    assert f"依据本院{RULING}执行裁定" in text and f"enforcementruling{RULING}" in text
    assert WARNING_ZH in text and re.sub(r"\s+", "", WARNING_EN) in text
    assert "擅自动用" not in text and "Using,moving" not in text
    assert not any(placeholder in text for placeholder in PLACEHOLDERS)


def test_the_page_lists_the_portal_s_grounds_the_objection_and_the_same_warning(world: World) -> None:
    page = world.client.get(f"/notice/{printed(world)}")
    assert page.status_code == 200
    html = page.text
    for label in GROUND_LABELS.values():
        assert label.zh in html and label.en in html and label.article in html
    assert "与申请执行人达成和解、提供担保等" not in html  # the old paraphrase: security alone is no ground
    objection = re.search(r'<p id="objection">(.*?)</p>', html, re.DOTALL)
    assert objection is not None
    said = objection.group(1)
    assert "书面异议" in said and "十五日内审查" in said and "十日内向上一级人民法院申请复议" in said
    assert "in writing" in said and "within 15 days" in said and "within 10 days" in said
    assert WARNING_ZH in html and WARNING_EN in html and "擅自动用" not in html
    assert f"依据本院{RULING}执行裁定" in html and RULING in html


def test_a_notice_issued_before_the_ruling_was_recorded_still_reads() -> None:
    """Facts stored before migration 0028 have no ruling: they read as none, not as an error."""
    facts = NoticeFacts("法院", "1", CASE, "", "", "2026-12-04", "房", "址", "2029-12-03", DEVICE)
    stored = json.loads(facts.canonical())
    del stored["ruling_no"]
    assert NoticeFacts.from_json(json.dumps(stored)) == facts


def test_the_command_line_refuses_naming_what_is_missing(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = write_config(tmp_path, database_url, public_base_url="https://seal.court.example")
    assert main(["init-db", "--config", str(config)]) == 0
    assert main(["court", "add", COURT_CODE, "无锡市滨湖区人民法院", "--phone", "0510-1", "--config", str(config)]) == 0
    case = ["case", "add", CASE, "--address", "滨湖区某路1号", "--property", "房屋一套", "--config", str(config)]
    assert main(case) == 0
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            key = SimulatedSeal(DEVICE, CASE).public_key
            register_seal(session, actor=None, device_id=DEVICE, case_no=CASE, public_key=key)
    finally:
        engine.dispose()
    assert main(["notice-key", "--config", str(config)]) == 0
    capsys.readouterr()
    out = tmp_path / "notice.pdf"
    assert main(["notice", DEVICE, "-o", str(out), "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "尚未登记执行裁定书文号、查封期限" in err
    assert "the enforcement ruling's number, the seizure's last day" in err
    assert not out.exists()

    other = "(2022)苏0214执55号"
    full = ["--address", "某路2号", "--property", "车辆一辆", "--ruling", f"{other}之一", "--expires", "2029-12-03"]
    assert main(["case", "add", other, *full, "--config", str(config)]) == 0
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            key = SimulatedSeal("seal-0002", other).public_key
            register_seal(session, actor=None, device_id="seal-0002", case_no=other, public_key=key)
    finally:
        engine.dispose()
    assert main(["notice", "seal-0002", "-o", str(out), "--config", str(config)]) == 0
    text = re.sub(r"\s+", "", subprocess.run(["pdftotext", str(out), "-"], capture_output=True).stdout.decode())
    assert f"依据本院{other}之一执行裁定" in text and "车辆一辆" in text and "2029-12-03" in text
