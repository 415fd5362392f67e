"""An alarm raised from an event the court received 36 h after the seal says it happened (a seal offline for days,
its binding still current, draining its outbox): both alarm cards (overview and case) say when it happened by the
seal's clock and when the court received it, in the page's language, and its live alert is worded as a delayed
report (迟报), not as a break-in under way. Before, the cards said only "opened <now>"; the case card also left out
the ``late`` mark (of an ended binding) that the overview's shows."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from seal_protocol import EventType
from server.alarms.models import Alarm
from server.core.court_clock import court_clock
from server.core.db import session_scope
from server.seals.models import SealBinding
from tests.web.conftest import SEAL, PagesWorld
from tests.web.test_case_pages import CASE_URL

TAMPER = {"armed": True, "state": "open", "warning": "played", "snapshots": []}


def _row(page: str, kind: str) -> str:
    found = re.search(rf'<li id="(?:case-)?alarm-\d+"[^>]*data-kind="{kind}".*?</li>', page, re.S)
    assert found is not None, f"no {kind} alarm on the page"
    return html.unescape(found.group(0))


def _pages(world: PagesWorld, kind: str) -> dict[tuple[str, str], str]:
    rows = {}
    with world.client("judge") as client:
        for lang in ("zh-CN", "en"):
            client.cookies.set("seal_lang", lang)
            rows[lang, "case"] = _row(client.get(CASE_URL).text, kind)
            rows[lang, "overview"] = _row(client.get("/").text, kind)
    return rows


def test_both_cards_say_when_it_happened_by_the_seal_s_clock_and_when_it_was_received(world: PagesWorld) -> None:
    seal = world.seal
    happened = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=36)
    with session_scope(world.session_factory) as session:  # installed days ago
        session.execute(
            update(SealBinding).where(SealBinding.device_id == SEAL).values(bound_at=happened - timedelta(days=2))
        )
    synced = {"clock": {"synced": True, "max_error_ms": 5}}  # the seal's word: its clock was synchronised
    world.ingest(
        (seal.event_topic, seal.event(EventType.HEARTBEAT, synced, at=happened - timedelta(minutes=1))),
        (seal.event_topic, seal.event(EventType.TAMPER, TAMPER, at=happened)),
    )
    rows = _pages(world, "tamper")
    seal_time = court_clock(happened)
    for where in ("case", "overview"):
        zh, en = rows["zh-CN", where], rows["en", where]
        assert f"迟报：据封条时钟发生于 {seal_time}，法院于 " in zh, zh
        assert "才收到（晚 36 小时" in zh and "封条时钟若不准" in zh
        assert f"Delayed report: it happened {seal_time} by the seal's clock, and the court received it " in en, en
        assert "(36 h later" in en
        # still alerted (the court learns of it only now), but worded as a delayed report with the seal's time
        assert 'data-alert="1"' in zh
        assert re.search(rf'data-alert-text="[^"]*迟报（据封条时钟发生于 {seal_time}）', zh), zh
        assert re.search(rf'data-alert-text="[^"]*delayed report \(happened {seal_time} by the seal', en), en
        assert "告警时间" in zh  # when the court raised it: not "发生时间", which the seal's time is
    # the intrusion the world's seal sent on time says nothing of the kind
    for (lang, where), row in _pages(world, "intrusion").items():
        assert "迟报" not in row and "Delayed report" not in row and "delayed report" not in row, (lang, where)


def test_the_case_card_says_late_as_the_overview_does(world: PagesWorld) -> None:
    """``late``: an event of a binding that has ended, delivered after it ended."""
    with session_scope(world.session_factory) as session:
        alarm = session.get(Alarm, world.alarm_id)
        assert alarm is not None
        alarm.details = {**alarm.details, "late": True}
    rows = _pages(world, "intrusion")
    for where in ("case", "overview"):
        assert "解除绑定后送达" in rows["zh-CN", where] and "arrived after unbinding" in rows["en", where], where


def test_a_folded_alarm_says_its_opening_report_was_delayed_and_alerts_by_its_latest(world: PagesWorld) -> None:
    """Opened by a tamper delivered 36 h late, then an on-time tamper folded in: the card still says the first report
    was late (and names the latest, on time, as such by saying nothing of it); the alert is of the latest report."""
    seal = world.seal
    now = datetime.now(UTC).replace(microsecond=0)
    happened = now - timedelta(hours=36)
    with session_scope(world.session_factory) as session:
        session.execute(
            update(SealBinding).where(SealBinding.device_id == SEAL).values(bound_at=happened - timedelta(days=2))
        )
    synced = {"clock": {"synced": True, "max_error_ms": 5}}
    world.ingest(
        (seal.event_topic, seal.event(EventType.HEARTBEAT, synced, at=happened - timedelta(minutes=1))),
        (seal.event_topic, seal.event(EventType.TAMPER, TAMPER, at=happened)),
    )
    opening_seq = seal.seq
    world.ingest((seal.event_topic, seal.event(EventType.TAMPER, TAMPER)))
    rows = _pages(world, "tamper")
    seal_time = court_clock(happened)
    for where in ("case", "overview"):
        zh, en = rows["zh-CN", where], rows["en", where]
        assert f"首次报告（序号 {opening_seq}）— 迟报：据封条时钟发生于 {seal_time}" in zh, zh
        assert f"First report (seq {opening_seq}) — Delayed report: it happened {seal_time}" in en, en
        assert "最近一次报告" not in zh and "Latest report" not in en  # the latest was on time
        assert not re.search(r'data-alert-text="[^"]*迟报', zh), zh  # something is happening now
        assert not re.search(r'data-alert-text="[^"]*delayed report', en), en


def test_a_seal_whose_clock_is_not_synchronised_has_its_time_in_doubt_not_a_delay(world: PagesWorld) -> None:
    """Its clock an hour behind and saying it is not synchronised, the seal delivers a tamper at once."""
    seal = world.seal
    now = datetime.now(UTC).replace(microsecond=0)
    unsynced = {"clock": {"synced": False, "max_error_ms": 16000}}
    world.ingest(
        (seal.event_topic, seal.event(EventType.HEARTBEAT, unsynced, at=now - timedelta(hours=1))),
        (seal.event_topic, seal.event(EventType.TAMPER, TAMPER, at=now - timedelta(hours=1))),
    )
    rows = _pages(world, "tamper")
    seal_time = court_clock(now - timedelta(hours=1))
    for where in ("case", "overview"):
        zh, en = rows["zh-CN", where], rows["en", where]
        assert "迟报：" not in zh and "迟报（" not in zh and "delayed report" not in en.lower(), (zh, en)
        assert f"时间存疑：封条自报时钟未同步，据其时钟发生于 {seal_time}，法院于 " in zh, zh
        assert "两者相差 60 分钟；无法判断是否迟报" in zh, zh
        assert f"Time in doubt: the seal said its clock was not synchronised; it happened {seal_time}" in en, en
        assert "whether it was reported late cannot be told" in en
        assert re.search(rf'data-alert-text="[^"]*时间存疑（封条时钟未同步或未报告，据其时钟发生于 {seal_time}）', zh)
        assert re.search(r'data-alert-text="[^"]*time in doubt \(the seal', en), en


def test_a_delayed_report_folded_into_an_on_time_alarm_is_named_the_latest_report_s(world: PagesWorld) -> None:
    """The other way round: opened on time, then a report 10 min late folded in. The card says it is the latest
    report that was late, not the alarm (whose opening was on time)."""
    seal = world.seal
    now = datetime.now(UTC).replace(microsecond=0)
    synced = {"clock": {"synced": True, "max_error_ms": 5}}
    world.ingest(
        (seal.event_topic, seal.event(EventType.HEARTBEAT, synced, at=now)),
        (seal.event_topic, seal.event(EventType.TAMPER, TAMPER, at=now)),
    )
    world.ingest((seal.event_topic, seal.event(EventType.TAMPER, TAMPER, at=now - timedelta(minutes=10))))
    rows = _pages(world, "tamper")
    for where in ("case", "overview"):
        zh, en = rows["zh-CN", where], rows["en", where]
        assert f"最近一次报告（序号 {seal.seq}）— 迟报：据封条时钟发生于 " in zh, zh
        assert f"Latest report (seq {seal.seq}) — Delayed report: it happened " in en, en
        assert "首次报告" not in zh and "First report" not in en
