"""The pages of a big case do as much work as those of a small one: a case's heartbeats (most of its events: every
seal sends one every few minutes) and a seal's thousands of live alarms cost the case page, the seal page, the
timeline and the overview nothing they do not show. Counted in statements and in SQLite's own steps
(:func:`~tests.web.court_scale.counting_steps`), not timed: each query finds its rows through an index and stops
(migration 0029), and none runs once per seal."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from sqlalchemy import event, insert

from server.alarms.models import Alarm
from server.core.base import utc_now
from server.core.db import session_scope
from server.evidence.models import Event
from server.seals.models import Seal
from server.web.dashboard import MAX_ALARMS
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.court_scale import counting_queries, counting_steps, event_row

PAGES = ["/", f"/cases/{quote(CASE, safe='')}", f"/seals/{SEAL}", f"/cases/{quote(CASE, safe='')}/timeline?before=2"]
OTHERS = 10


def other_seals(world: PagesWorld) -> list[str]:
    """:data:`OTHERS` more seals guarding the world's case, each with one heartbeat."""
    now = utc_now()
    devices = [f"seal-big-{n:02d}" for n in range(OTHERS)]
    rows = [
        {
            "device_id": device,
            "public_key": base64.b64encode((1000 + n).to_bytes(32, "big")).decode("ascii"),
            "case_no": CASE,
            "location": f"仓库 {n}",
            "registered_at": now,
            "status": "online",
            "status_changed_at": now,
            "last_seen_at": now,
            "last_event_at": now,
            "armed": True,
        }
        for n, device in enumerate(devices)
    ]
    with session_scope(world.session_factory) as session:
        session.execute(insert(Seal), rows)
        session.execute(insert(Event), [event_row(device, CASE, 1, "heartbeat", now) for device in devices])
    return devices


def heartbeats(world: PagesWorld, devices: list[str], each: int) -> None:
    now = utc_now()
    rows = [event_row(device, CASE, seq, "heartbeat", now) for device in devices for seq in range(2, each + 2)]
    with session_scope(world.session_factory) as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Event), rows[start : start + 5000])


def work(world: PagesWorld) -> dict[str, tuple[int, int]]:
    """Each page's statements and steps, read by the case's judge."""
    taken = {}
    with world.client("judge") as client:
        for url in PAGES:
            client.get(url)  # the first reads of a session are not the page's
            with counting_queries() as statements, counting_steps() as steps:
                assert client.get(url).status_code == 200
                taken[url] = (len(statements), len(steps))
    return taken


def test_a_case_s_heartbeats_cost_its_pages_nothing(world: PagesWorld) -> None:
    """20,000 heartbeats of the case's other seals: the world's seal has none, nor an agent start, and its pages
    and the case's timeline (which leaves heartbeats out) used to walk through all of them to find that out."""
    devices = other_seals(world)
    small = work(world)
    heartbeats(world, devices, 2000)
    big = work(world)
    for url in PAGES:
        (queries, steps), (queries_big, steps_big) = small[url], big[url]
        assert queries_big == queries, f"{url}: {queries} statements, then {queries_big}"
        assert steps_big < 1.5 * steps + 50, f"{url}: {steps} steps, then {steps_big} with 20,000 heartbeats"


def test_the_case_page_reads_its_seals_last_heartbeats_in_one_statement(world: PagesWorld) -> None:
    url = f"/cases/{quote(CASE, safe='')}"
    with world.client("judge") as client, counting_queries() as few:
        client.get(url)
    other_seals(world)
    with world.client("judge") as client, counting_queries() as many:
        client.get(url)
    assert len(many) == len(few), f"{len(few)} statements for one seal, {len(many)} for {1 + OTHERS}: one per seal"


def test_the_overview_counts_a_seal_s_live_alarms_without_loading_them(world: PagesWorld) -> None:
    """A seal with 2,000 live alarms: its tile says it is alarming; the page loads the alarms it lists, no more."""
    now = utc_now()
    row = {"case_no": CASE, "device_id": SEAL, "kind": "intrusion", "severity": "high", "state": "open"}
    with session_scope(world.session_factory) as session:
        session.execute(insert(Alarm), [{**row, "opened_at": now, "last_seen_at": now} for _ in range(2000)])
    loaded: list[Any] = []

    def note(alarm: Alarm, _context: Any) -> None:
        loaded.append(alarm.id)

    event.listen(Alarm, "load", note)
    try:
        with world.client("judge") as client:
            html = client.get("/").text
    finally:
        event.remove(Alarm, "load", note)
    assert f'id="seal-{SEAL}" class="tile alarming"' in html
    assert len(loaded) <= 2 * MAX_ALARMS, f"{len(loaded)} alarms loaded for a page listing {MAX_ALARMS}"


def test_a_case_s_heartbeats_cost_its_events_of_a_type_nothing(world: PagesWorld) -> None:
    """``/api/…/events?type=intrusion`` (the world's seal has one) with 20,000 heartbeats of the case's other seals:
    the case's query walked its ``case_no, id`` index back through every heartbeat to find the one intrusion."""
    urls = [f"/api/cases/{quote(CASE, safe='')}/events?type=intrusion", f"/api/seals/{SEAL}/events?type=intrusion"]
    devices = other_seals(world)

    def steps_of(url: str) -> int:
        with world.client("judge") as client:
            client.get(url)
            with counting_steps() as steps:
                response = client.get(url)
            assert response.status_code == 200, response.text
            assert [event["type"] for event in response.json()["events"]] == ["intrusion"]
            return len(steps)

    small = [steps_of(url) for url in urls]
    heartbeats(world, devices, 2000)
    for url, before in zip(urls, small, strict=True):
        after = steps_of(url)
        assert after < 1.5 * before + 50, f"{url}: {before} steps, then {after} with 20,000 heartbeats"
