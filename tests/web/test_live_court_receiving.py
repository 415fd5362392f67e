"""A court that is not receiving from its seals says so on its open pages: its broker gone (``seal-server run`` and a
private Mosquitto, in Chromium), or its ingest workers' caught-up mark lagging (read from the database, as a process
without an ingest of its own learns it). Nothing else would show it: the liveness check holds back its offline
alarms meanwhile, on purpose, so the tiles would go on saying "online"."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from seal_dev.broker import PrivateBroker
from seal_dev.court_process import CourtProcess
from server.api.health import receiving
from server.core.base import utc_now
from server.core.db import make_engine, make_session_factory, session_scope
from server.core.receiving import CourtReceiving
from server.marks.marks import BEHIND_AFTER_S, record_mark
from server.seals.models import Seal
from server.seals.registry import register_seal
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, PagesWorld, SignIn
from tests.web.test_live_stream import events

ONLINE_SEAL = "seal-heard-1"
NOT_RECEIVING = (
    "法院未连接封条网络，以下状态可能已过时"  # the page's language (English: "The court is not receiving …")
)


def _an_online_seal(court: CourtProcess) -> None:
    """A seal of :data:`CASE` heard from just now: its tile says "online"."""
    with session_scope(court.session_factory) as session:
        key = SimulatedSeal(ONLINE_SEAL, CASE).public_key
        register_seal(session, actor=None, device_id=ONLINE_SEAL, case_no=CASE, public_key=key, location="仓库")
    with session_scope(court.session_factory) as session:
        seal = session.query(Seal).filter_by(device_id=ONLINE_SEAL).one()
        seal.status, seal.last_seen_at, seal.armed = "online", utc_now(), True


def test_a_court_that_loses_its_broker_says_so_on_the_open_page_until_it_is_back(
    broker: PrivateBroker, court: CourtProcess, signed_in: SignIn
) -> None:
    _an_online_seal(court)
    page, watch = signed_in("judge")
    banner = page.locator("#court-banner")
    body = page.locator("body")
    pill = page.locator(f"#seal-{ONLINE_SEAL} .pill.online")
    expect(pill).to_be_visible()
    expect(body).to_have_attribute("data-live", "up")
    expect(body).to_have_attribute("data-court", "receiving")
    expect(banner).to_be_hidden()

    broker.stop()
    expect(banner).to_be_visible(timeout=15_000)  # the ingest's connection drops at once; the page hears in seconds
    expect(banner).to_have_text(NOT_RECEIVING)
    expect(body).to_have_attribute("data-court", "not-receiving")
    assert pill.evaluate("p => getComputedStyle(p, '::after').content") == '" ?"'  # "online", not current
    assert court.health()["broker"] == "disconnected"

    broker.start()
    expect(banner).to_be_hidden(timeout=60_000)  # paho reconnects within seconds
    expect(body).to_have_attribute("data-court", "receiving")
    expect(body).to_have_attribute("data-live", "up")
    assert pill.evaluate("p => getComputedStyle(p, '::after').content") in ("none", "normal")
    assert watch.page_errors == []


def _court_of_heartbeats(stream: str) -> list[str]:
    return [json.loads(m["data"])["court"] for m in events(stream) if m["event"] == "heartbeat"]


def test_a_pages_process_learns_from_the_ingest_s_marks_that_the_court_is_behind(world: PagesWorld) -> None:
    """No ingest in this process: the workers' caught-up mark, in the database, is what says the court is behind."""
    with world.client("judge") as client:
        assert set(_court_of_heartbeats(client.get("/live").text)) == {"ok"}
        with session_scope(world.session_factory) as session:
            lagging = utc_now() - timedelta(seconds=BEHIND_AFTER_S + 30)
            record_mark(session, worker="court-ingest-1", caught_up_at=lagging)
        deadline = time.monotonic() + 10
        while (said := _court_of_heartbeats(client.get("/live").text))[-1] != "behind":
            assert time.monotonic() < deadline, said
        with session_scope(world.session_factory) as session:
            record_mark(session, worker="court-ingest-1", caught_up_at=utc_now())
        deadline = time.monotonic() + 10
        while (said := _court_of_heartbeats(client.get("/live").text))[-1] != "ok":
            assert time.monotonic() < deadline, said


def test_a_database_that_does_not_answer_is_not_receiving_and_said_once(
    world: PagesWorld, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The marks unreadable (the database away): the pages say the court is not receiving — they said "ok", and a
    warning was logged at every check, once a second."""
    with world.client("judge"):  # the app started: its context made
        context = world.app.state.context
    broken = make_engine(f"sqlite:///{tmp_path / 'no-such-directory' / 'court.db'}")
    away = replace(context, engine=broken, session_factory=make_session_factory(broken))
    caplog.set_level(logging.WARNING)
    watch = CourtReceiving(lambda: receiving(away))
    assert [watch.check() for _ in range(3)] == ["database"] * 3
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "not receiving" in said[0], said
