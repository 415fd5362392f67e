"""The overview and the case page at a court's scale, in-process: what they cost does not grow with the seals and
alarms shown (statements per page, not per seal), and what they leave out they say (open alarms first, a count of
the rest). The figures of a real court (2,000 seals, 1,000 alarms) are in the full run only (``SEAL_LONG_TESTS``)."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import insert

from server.alarms.models import Alarm
from server.core.base import utc_now
from server.core.db import session_scope
from server.web.case_model import LIVE_ALARMS
from server.web.creditor import MAX_ALARMS as CREDITOR_ALARMS
from server.web.dashboard import MAX_ALARMS
from tests.conftest import full_run
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.court_scale import Scale, counting_queries, seal_id, seed

TILE = re.compile(r'<article id="seal-')


def overview_statements(world: PagesWorld, username: str) -> tuple[int, str]:
    with world.client(username) as client, counting_queries() as statements:
        answer = client.get("/")
        assert answer.status_code == 200
        taken = len(statements)
    return taken, answer.text


def test_the_overview_reads_the_tiles_in_a_few_statements_whatever_the_number_of_seals(world: PagesWorld) -> None:
    seed(world.session_factory, Scale(cases=3, seals=6, alarms=3))
    few, html = overview_statements(world, "clerk")
    assert len(TILE.findall(html)) == 1 + 6
    seed(world.session_factory, Scale(cases=10, seals=60, alarms=30), first=100)
    many, html = overview_statements(world, "clerk")
    assert len(TILE.findall(html)) == 1 + 6 + 60
    assert many == few, f"{few} statements for 7 seals, {many} for 67: a query per seal"
    assert 'data-last-event="intrusion"' in html and f"/api/snapshots/{world.snapshot}" in html


def acknowledged_alarms(world: PagesWorld, n: int) -> None:
    """``n`` acknowledged alarms of :data:`CASE`, all newer than the world's open one."""
    later = utc_now() + timedelta(minutes=1)
    row = {"case_no": CASE, "device_id": SEAL, "kind": "camera_blind", "severity": "medium", "state": "acknowledged"}
    with session_scope(world.session_factory) as session:
        session.execute(insert(Alarm), [{**row, "opened_at": later, "last_seen_at": later} for _ in range(n)])


def test_an_open_alarm_is_listed_however_many_newer_alarms_were_acknowledged(world: PagesWorld) -> None:
    acknowledged_alarms(world, MAX_ALARMS + 5)
    _taken, html = overview_statements(world, "judge")
    assert f'id="alarm-{world.alarm_id}"' in html, "the open alarm fell behind the limit"
    assert html.count("data-alarm-id=") == MAX_ALARMS
    assert f'data-alarms-total="{MAX_ALARMS + 6}"' in html  # what is left out is said


def test_a_clerks_overview_of_a_real_court(world: PagesWorld, request: pytest.FixtureRequest) -> None:
    """2,000 seals over 300 cases, 1,000 open alarms: a few dozen statements, every tile, the alarms capped."""
    if not full_run(request.config):
        pytest.skip("a real court's size: in the full run (SEAL_LONG_TESTS=1)")
    seed(world.session_factory, Scale(cases=300, seals=2000, alarms=1000))
    taken, html = overview_statements(world, "clerk")
    assert taken < 50
    assert len(TILE.findall(html)) == 2001
    assert html.count("data-alarm-id=") == MAX_ALARMS and 'data-alarms-total="1001"' in html


def test_the_case_page_lists_a_bounded_number_of_live_alarms_open_first_and_says_how_many_it_leaves_out(
    world: PagesWorld,
) -> None:
    """Every live update of the case sends its alarms again: a case with a thousand live alarms must not send a
    thousand cards with each event."""
    acknowledged_alarms(world, LIVE_ALARMS + 10)
    with world.client("judge") as client:
        html = client.get(f"/cases/{CASE}").text
    assert html.count('id="case-alarm-') == LIVE_ALARMS
    assert f'id="case-alarm-{world.alarm_id}"' in html, "the open alarm fell behind the limit"
    assert 'data-alarms-left-out="11"' in html


def test_the_counts_are_those_of_the_database(world: PagesWorld) -> None:
    """Seals in alarm: those with a live alarm of the case they guard now (a late alarm of a former case is not)."""
    seed(world.session_factory, Scale(cases=3, seals=6, alarms=3))
    now = utc_now()
    former = {"device_id": seal_id(3), "case_no": CASE, "kind": "intrusion", "severity": "high", "state": "open"}
    with session_scope(world.session_factory) as session:
        session.execute(insert(Alarm), [{**former, "opened_at": now, "last_seen_at": now}])
    _taken, html = overview_statements(world, "clerk")
    shown = dict(re.findall(r'data-count="(\w+)">(\d+)<', html))
    assert shown == {"online": "6", "offline": "1", "in_alarm": str(1 + 3)}


def test_the_creditor_sees_a_live_alarm_however_many_newer_alarms_were_closed(world: PagesWorld) -> None:
    later = utc_now() + timedelta(minutes=1)
    row = {"case_no": CASE, "device_id": SEAL, "kind": "camera_blind", "severity": "medium", "state": "closed"}
    with session_scope(world.session_factory) as session:
        rows = [{**row, "opened_at": later, "last_seen_at": later, "closed_at": later}] * (CREDITOR_ALARMS + 5)
        session.execute(insert(Alarm), rows)
    with world.client("creditor") as client:
        html = client.get(f"/creditor/cases/{quote(CASE)}").text
    assert f'id="alarm-{world.alarm_id}"' in html, "the live alarm fell behind the limit"
    assert html.count("data-alarm-id=") == CREDITOR_ALARMS


def test_the_creditor_sees_an_open_alarm_however_many_newer_alarms_were_acknowledged(world: PagesWorld) -> None:
    acknowledged_alarms(world, CREDITOR_ALARMS + 5)
    with world.client("creditor") as client:
        html = client.get(f"/creditor/cases/{quote(CASE)}").text
    assert f'id="alarm-{world.alarm_id}"' in html, "the open alarm fell behind the limit"
    assert html.count("data-alarm-id=") == CREDITOR_ALARMS
    first = re.search(r'data-alarm-id="(\d+)"', html)
    assert first is not None and int(first.group(1)) == world.alarm_id  # open first
