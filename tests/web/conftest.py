"""Fixtures of the page tests: Debian's chromium (skipped, with the reason, only where it is not installed), the
court server as its own process on a private Mosquitto, a case with one user per role, and a seal — the real agent
code on gpiozero mock pins, a generated video as its camera — installed for the case.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_dev.browser import PageWatch, chromium_path, launch, sign_in
from seal_dev.court_process import CourtProcess, seal_config
from seal_protocol import EventType, snapshot_topic
from server.alarms.models import Alarm
from server.app import create_app
from server.auth.access import Role
from server.config import WebSettings
from server.core.db import SessionFactory, session_scope
from server.core.live import LiveHub
from server.core.metrics import IngestMetrics
from server.ingest.changes import live_changes
from server.ingest.ingestor import Ingestor
from server.seals.cases import add_case, add_court
from server.seals.registry import register_seal
from tests.agent.conftest import mock_pins, runtimes  # noqa: F401 - fixtures, re-exported for these tests
from tests.agent.helpers import RecordingSpeaker, RuntimeFactory, pulse, verify_key, wait_until
from tests.agent_camera.clips import moving_rectangle_frames, write_clip
from tests.server.auth_helpers import PASSWORD, add_user, make_settings
from tests.server.conftest import database_url, engine, migrated_sqlite, session_factory  # noqa: F401 - fixtures
from tests.server.helpers import COURT_PHONE, SimulatedSeal, jpeg_bytes, message, notice_facts

CASE = "(2021)苏0214执1234号"
OTHER_CASE = "(2022)苏0214执567号"
SEAL = "seal-web-1"
PLACE = "新吴区长江路 18 号 3 号仓库"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
#: How long an expect() in the page tests waits by default, in ms.
EXPECT_TIMEOUT_MS = 20_000
#: pytest-timeout's limit of a test that starts seal-server (allowed 90 s) or drives Chromium: pyproject's 120 s per
#: test, setup included, is too little for those on a loaded machine.
PROCESS_TEST_TIMEOUT_S = 300
#: The page tests' stream: a heartbeat every second, so that a dead stream shows within three.
WEB_SETTINGS = "[web]\nheartbeat_s = 1.0\n[liveness]\ncheck_interval_s = 1.0\n"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        uses = set(getattr(item, "fixturenames", ())) & {"court", "browser", "pages"}
        if here in Path(str(item.path)).parents and uses and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(PROCESS_TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's chromium; the browser tests are skipped, saying so, only where it is not installed."""
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it)")
    # Every expect() without a timeout of its own waits this long: Playwright's 5 s is short for a server round trip
    # and a live stream's push on a loaded machine (a test that checks something does not happen says its own).
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        instance = launch(playwright)
        try:
            yield instance
        finally:
            instance.close()


def add_cases(session: Session) -> None:
    """The two cases, with every fact a notice prints (their court's telephone too)."""
    add_court(session, actor=None, code="苏0214", name="无锡市新吴区人民法院", phone=COURT_PHONE)
    add_case(session, actor=None, case_no=CASE, judge="王法官", **notice_facts(CASE))
    add_case(session, actor=None, case_no=OTHER_CASE, judge="李法官", **notice_facts(OTHER_CASE))


@pytest.fixture
def court(tmp_path: Path, broker: PrivateBroker) -> Iterator[CourtProcess]:
    """The court server running, with two cases and a user per role on the first (``other-judge`` on the second)."""
    yield from running_court(tmp_path, broker, WEB_SETTINGS)


def running_court(tmp_path: Path, broker: PrivateBroker, settings: str) -> Iterator[CourtProcess]:
    """The :func:`court` fixture's court, with ``settings`` (TOML) added to its configuration."""
    process = CourtProcess(tmp_path / "court", broker, extra_settings=settings)
    with session_scope(process.session_factory) as session:
        add_cases(session)
    for role in Role:
        add_user(process.session_factory, role.value, role, () if role is Role.CLERK else (CASE,))
    add_user(process.session_factory, "other-judge", Role.JUDGE, (OTHER_CASE,))
    process.start()
    try:
        yield process
    finally:
        process.close()


@dataclass
class InstalledSeal:
    runtime: SealRuntime
    pins: MockFactory

    def walk_in(self) -> None:
        """A presence before the PIR sensor: its pin goes high and low again."""
        pulse(self.pins)


@pytest.fixture
def seal(
    tmp_path: Path,
    broker: PrivateBroker,
    court: CourtProcess,
    runtimes: RuntimeFactory,  # noqa: F811 - the fixture imported above
    mock_pins: MockFactory,  # noqa: F811
) -> InstalledSeal:
    """A seal with a camera (someone walking, on video) installed for :data:`CASE`, started and heard from."""
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(200))
    config = seal_config(
        tmp_path / SEAL,
        broker,
        device_id=SEAL,
        case_no=CASE,
        court_public_key=court.court_public_key,
        camera_file=video,
    )
    runtime = runtimes(config, speaker=RecordingSpeaker())
    key = base64.b64encode(bytes(verify_key(config))).decode("ascii")
    with session_scope(court.session_factory) as session:
        register_seal(session, actor=None, device_id=SEAL, case_no=CASE, public_key=key, location=PLACE)
    runtime.start()
    assert runtime.camera is not None and runtime.camera.monitor.wait_for_observations(8, 10)
    assert wait_until(lambda: court_has_heard(court), 20), court.log_tail()
    return InstalledSeal(runtime, mock_pins)


def court_has_heard(court: CourtProcess) -> bool:
    from sqlalchemy import select

    from server.seals.models import Seal

    with court.session_factory() as session:
        return session.scalar(select(Seal.last_event_at).where(Seal.device_id == SEAL)) is not None


SignIn = Callable[..., tuple[Page, PageWatch]]


@pytest.fixture
def signed_in(browser: Browser, court: CourtProcess) -> Iterator[SignIn]:
    """``signed_in("judge", lang="en", viewport=(390, 844))`` → a page signed in through the sign-in page, watched."""
    contexts: list[BrowserContext] = []

    def make(username: str, *, lang: str = "zh-CN", viewport: tuple[int, int] = (1440, 900)) -> tuple[Page, PageWatch]:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, locale=lang)
        contexts.append(context)
        if lang != "zh-CN":
            context.add_cookies([{"name": "seal_lang", "value": lang, "url": court.url}])
        page = context.new_page()
        watch = PageWatch(page)
        sign_in(page, court.url, username, PASSWORD)
        return page, watch

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot under var/screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# -- pages in-process (no browser): the app under TestClient on the server tests' database -------------------------


@dataclass
class PagesWorld:
    """Two cases; ``seal-web-1`` on :data:`CASE` with a heartbeat, an intrusion (alarm) and the snapshot it names; one
    user per role on :data:`CASE` (named after the role), ``other-judge`` on :data:`OTHER_CASE`; the app, not yet
    started."""

    session_factory: SessionFactory
    ingestor: Ingestor
    seal: SimulatedSeal
    app: FastAPI
    snapshot: str
    alarm_id: int

    @property
    def hub(self) -> LiveHub:
        hub: LiveHub = self.app.state.live
        return hub

    def ingest(self, *payloads: tuple[str, bytes]) -> None:
        """Store messages as the running ingest does; its ``on_commit`` publishes what changed after the commit."""
        self.ingestor.ingest([message(topic, data) for topic, data in payloads])

    def client(self, username: str | None = None) -> TestClient:
        """A client of the app (started by the caller: ``with world.client("judge") as c``), signed in through
        the sign-in page if ``username`` is given."""
        client = SignedInClient(self.app, follow_redirects=False)
        if username is not None:
            client.__enter__()
            form = client.get("/login")
            token = csrf_of(form.text)
            answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
            assert answer.status_code == 303, answer.text
        return client


class SignedInClient(TestClient):
    """A TestClient that a ``with`` after its sign-in does not start a second time: entered twice, the app's
    lifespan ran again and closed the live hub, so every stream of the block ended after its first heartbeat."""

    _entered = False

    def __enter__(self) -> Self:
        if not self._entered:
            self._entered = True
            super().__enter__()
        return self


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]*)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


@pytest.fixture
def web_settings() -> WebSettings:
    """The pages' settings of :func:`world`: a short stream (TestClient reads a response to its end)."""
    return WebSettings(heartbeat_s=0.2, stream_max_s=0.6)


@pytest.fixture
def world(
    session_factory: SessionFactory,  # noqa: F811 - the fixture imported above
    database_url: str,  # noqa: F811
    tmp_path: Path,
    web_settings: WebSettings,
) -> PagesWorld:
    with session_scope(session_factory) as session:
        add_cases(session)
    seal = SimulatedSeal(SEAL, CASE)
    with session_scope(session_factory) as session:
        register_seal(session, actor=None, device_id=SEAL, case_no=CASE, public_key=seal.public_key, location=PLACE)
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (CASE,))
    add_user(session_factory, "other-judge", Role.JUDGE, (OTHER_CASE,))
    settings = make_settings(database_url, tmp_path, login_max_failures=3)
    settings = settings.model_copy(update={"web": web_settings})
    app = create_app(settings, with_ingest=False)
    hub: LiveHub = app.state.live
    ingestor = Ingestor(
        session_factory,
        metrics=IngestMetrics(),
        snapshot_dir=tmp_path / "snapshots",
        on_commit=lambda results, alarms: hub.publish(live_changes(results, alarms)),  # as server.app's
    )
    picture = jpeg_bytes(shade=40)
    snapshot = hashlib.sha256(picture).hexdigest()
    world = PagesWorld(session_factory, ingestor, seal, app, snapshot, alarm_id=0)
    world.ingest(
        (seal.event_topic, seal.event(EventType.HEARTBEAT)),
        (
            seal.event_topic,
            seal.event(EventType.INTRUSION, {"armed": True, "warning": "played", "snapshots": [snapshot]}),
        ),
        (snapshot_topic(SEAL, snapshot), picture),
    )
    with session_factory() as session:
        world.alarm_id = session.scalars(select(Alarm.id).where(Alarm.device_id == SEAL)).one()
    return world


def held_posts(page: Page, held: list[Route], count: int) -> None:
    """Wait until ``count`` requests are held by a route (a loaded machine may take seconds to send the first),
    then half a second more, and check no more came: a second post of the same click would come meanwhile."""
    for _ in range(200):
        if len(held) >= count:
            break
        page.wait_for_timeout(50)
    page.wait_for_timeout(500)
    assert len(held) == count, [route.request.url for route in held]


def form_id_of(client: Any, device_id: str = SEAL) -> str:
    """The one-use id of the command form to ``device_id`` on the case page as ``client`` sees it now."""
    html = client.get(f"/cases/{quote(CASE, safe='')}").text
    found = re.search(rf'data-device="{re.escape(device_id)}">.*?name="form_id" value="([0-9a-f]+)"', html, re.S)
    assert found is not None, "no command form on the case page"
    return found.group(1)


def ping_form(client: Any) -> dict[str, str]:
    """The case page's form that pings :data:`SEAL`, as ``client`` has it now."""
    return {"device_id": SEAL, "action": "ping", "form_id": form_id_of(client)}
