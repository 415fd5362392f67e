"""A seal configured with another case number: the case page and the overview name the alarm (Chinese first, then
English), the case number the seal claims, and — prominently, alerting — the intrusion it reported under it."""

from __future__ import annotations

import html
import re

from seal_protocol import EventType
from tests.web.conftest import CASE, PagesWorld
from tests.web.test_case_pages import CASE_URL

TYPO = "(2021)苏0214执1243号"  # the world's case with two digits swapped
INTRUSION = {"armed": True, "warning": "played", "snapshots": []}


def _row(page: str) -> str:
    found = re.search(r'<li id="(?:case-)?alarm-\d+"[^>]*data-kind="case_mismatch".*?</li>', page, re.S)
    assert found is not None, "no case_mismatch alarm on the page"
    return html.unescape(found.group(0))


def test_the_pages_name_the_claimed_case_number_and_the_intrusion(world: PagesWorld) -> None:
    seal = world.seal
    world.ingest((seal.event_topic, seal.event(EventType.INTRUSION, INTRUSION, case_no=TYPO)))
    world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT, case_no=TYPO)))  # does not hide the intrusion
    rows = {}
    with world.client("judge") as client:
        for lang in ("zh-CN", "en"):
            client.cookies.set("seal_lang", lang)
            rows[lang, "case"] = _row(client.get(CASE_URL).text)
            rows[lang, "overview"] = _row(client.get("/").text)
    for where in ("case", "overview"):
        zh, en = rows["zh-CN", where], rows["en", where]
        assert "封条配置的案号与本案不符" in zh and "Seal configured with another case number" in en
        assert f"封条以案号“{TYPO}”上报事件" in zh and f"under case number “{TYPO}”" in en
        assert "其中有 1 次入侵或防拆报告未记入本案（最近一次：有人进入，序号 3" in zh
        assert "1 intrusion or tamper reports among them are not in this case's log (the last: Intrusion, seq 3" in en
        assert re.search(r"序号 3，\d{4}-\d\d-\d\d \d\d:\d\d:\d\d）", zh)  # the seal's time on the court's clock
        assert 'data-alert="1"' in zh and 'class="alarm open high"' in zh
    assert CASE in rows["zh-CN", "overview"]
