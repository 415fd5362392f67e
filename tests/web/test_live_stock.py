"""The court's stock (the seals bound to no case) on every open overview that shows it — an officer's or a clerk's,
whatever their cases: a seal bound to a case the viewer is not on leaves it at once (else the page, whose stream sends
heartbeats, keeps offering the seal as free to install, and the bind is refused), one unbound from such a case, one
registered or one a lifting releases enters it at once — and the stream says nothing of the other case (no case
number, no place). Both a stream open when it happens (after earlier changes, as a long-open page's) and one opened
after it (replaying the changes since its page). A real court server (uvicorn), streams read as the browser would."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select, update

from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key, public_key_b64
from server.auth.access import Role
from server.commands.models import CourtCommand
from server.config import WebSettings
from server.core.db import session_scope
from server.core.live import Change
from server.seals.models import Seal
from server.seals.registry import add_seal, register_seal
from tests.server.auth_helpers import PASSWORD, add_user
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, OTHER_CASE, PLACE, SEAL, PagesWorld, csrf_of
from tests.web.test_case_pages import file_removal
from tests.web.test_live_stream import live_url_of
from tests.web.test_live_stream_served import served  # noqa: F401 - the fixture

API = {"X-Requested-With": "XMLHttpRequest"}
STOCK = "seal-stock-9"
ELSEWHERE = "seal-elsewhere-3"
SECRET = "另一案的仓库 秘密地址 Room-77"  # the other case's premises: never on a page of the stock
UNBOUND = "未绑定案件"  # a stock seal's tile: bound to no case


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=1.0, stream_max_s=300, write_timeout_s=2)


@pytest.fixture
def stocked(world: PagesWorld) -> PagesWorld:
    """The world, with ``other-officer`` on the other case, a seal in stock and one bound to the other case."""
    add_user(world.session_factory, "other-officer", Role.OFFICER, (OTHER_CASE,))
    with session_scope(world.session_factory) as s:
        add_seal(s, actor=None, device_id=STOCK, public_key=public_key_b64(generate_signing_key()), location="库房")
        key = SimulatedSeal(ELSEWHERE, OTHER_CASE).public_key
        register_seal(s, actor=None, device_id=ELSEWHERE, case_no=OTHER_CASE, public_key=key, location=SECRET)
    return world


@contextmanager
def signed_in(base: str, username: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/api/auth/login", json={"username": username, "password": PASSWORD}).status_code == 200
        client.headers.pop("Authorization", None)  # the session cookie, as a browser has it
        yield client


class Live:
    """A page's live stream, read on a thread of its own: its updates in order."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.got: queue.Queue[str] = queue.Queue()
        self.updates: list[str] = []
        self._response = client.send(client.build_request("GET", url), stream=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        block: list[str] = []
        try:
            for line in self._response.iter_lines():
                if line:
                    block.append(line)
                    continue
                if block and block[0] in ("event: update", "event: gap"):
                    self.got.put("\n".join(block))
                block = []
        except httpx.HTTPError:  # closed under the reader when the test ends
            pass

    def until(self, expected: Callable[[str], bool], limit_s: float = 20.0) -> str:
        """The first update (from now on) that is ``expected``; every update is kept in ``updates``."""
        deadline = time.monotonic() + limit_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                update = self.got.get(timeout=left)
            except queue.Empty:
                break
            self.updates.append(update)
            if expected(update):
                return update
        raise AssertionError(f"no such update; got {self.updates}")

    def close(self) -> None:
        self._response.close()


@contextmanager
def streams(*pages: tuple[httpx.Client, str]) -> Iterator[list[Live]]:
    opened = [Live(client, live_url_of(client.get(path).text)) for client, path in pages]
    try:
        yield opened
    finally:
        for live in opened:
            live.close()


def warmed(world: PagesWorld, live: Live, device_id: str) -> None:
    """A change of ``device_id`` (shown on ``live``'s page) reaches ``live``: its stream knows what the page shows,
    as a page open for a while does."""
    world.hub.publish([Change("status", device_id)])
    live.until(lambda u: f'id="seal-{device_id}"' in u)


def grid(u: str) -> bool:
    return 'id="tiles"' in u


def tells_nothing_of_the_other_case(live: Live) -> None:
    for sent in live.updates:
        assert OTHER_CASE not in sent and quote(OTHER_CASE, safe="") not in sent and SECRET not in sent


def test_a_stock_seal_bound_to_another_case_leaves_every_view_of_the_stock(stocked: PagesWorld, served: str) -> None:  # noqa: F811
    world = stocked
    with (
        signed_in(served, "officer") as officer,
        signed_in(served, "judge") as judge,
        signed_in(served, "other-officer") as binder,
    ):
        later = officer.get("/").text  # a tab whose stream opens after the binding: it replays it
        assert f'id="seal-{STOCK}"' in later
        with streams((officer, "/"), (judge, "/")) as (open_, judges):
            warmed(world, open_, STOCK)
            warmed(world, judges, SEAL)
            body = {"case_no": OTHER_CASE, "location": SECRET}
            assert binder.put(f"/api/seals/{STOCK}/binding", json=body, headers=API).status_code == 200
            gone = open_.until(grid)
            assert f'id="seal-{STOCK}"' not in gone and f'id="seal-{SEAL}"' in gone, "still offered as free stock"
            with session_scope(world.session_factory) as s:  # after the binding, a change the judge's page shows
                s.execute(update(Seal).where(Seal.device_id == SEAL).values(location="MARKER-PLACE"))
            world.hub.publish([Change("status", SEAL)])
            judges.until(lambda u: "MARKER-PLACE" in u)  # the judge's stream has seen both
        replayed = Live(officer, live_url_of(later))
        try:
            gone = replayed.until(grid)
        finally:
            replayed.close()
        assert f'id="seal-{STOCK}"' not in gone and f'id="seal-{SEAL}"' in gone
    for live in (open_, replayed):
        tells_nothing_of_the_other_case(live)
    # The judge sees no stock: the binding elsewhere sent their overview nothing (not even its timing).
    assert not any(grid(u) or STOCK in u for u in judges.updates), judges.updates


def test_a_seal_unbound_from_another_case_enters_every_view_of_the_stock(stocked: PagesWorld, served: str) -> None:  # noqa: F811
    world = stocked
    with signed_in(served, "officer") as officer, signed_in(served, "clerk") as clerk:
        later = officer.get("/").text
        assert f'id="seal-{ELSEWHERE}"' not in later
        with streams((officer, "/")) as (open_,):
            warmed(world, open_, STOCK)
            assert clerk.delete(f"/api/seals/{ELSEWHERE}/binding", headers=API).status_code == 204
            come = open_.until(grid)
        replayed = Live(officer, live_url_of(later))
        try:
            again = replayed.until(grid)
        finally:
            replayed.close()
    for live, sent in ((open_, come), (replayed, again)):
        assert f'id="seal-{ELSEWHERE}"' in sent, "the seal unbound elsewhere is not offered as stock"
        tile = sent[sent.index(f'id="seal-{ELSEWHERE}"') :].split("</article>")[0]
        assert UNBOUND in tile
        tells_nothing_of_the_other_case(live)


def test_a_registered_seal_enters_every_view_of_the_stock(stocked: PagesWorld, served: str) -> None:  # noqa: F811
    world = stocked
    with signed_in(served, "officer") as officer, signed_in(served, "clerk") as clerk:
        later = officer.get("/").text
        with streams((officer, "/")) as (open_,):
            warmed(world, open_, STOCK)
            body = {"device_id": "seal-new-5", "public_key": public_key_b64(generate_signing_key()), "location": "库"}
            assert clerk.post("/api/seals", json=body, headers=API).status_code == 201
            assert 'id="seal-seal-new-5"' in open_.until(grid)
        replayed = Live(officer, live_url_of(later))
        try:
            assert 'id="seal-seal-new-5"' in replayed.until(grid)
        finally:
            replayed.close()


@pytest.mark.parametrize("via", ["api", "page"])
def test_the_seals_a_lifting_releases_enter_the_stock_and_their_pages_say_so(
    stocked: PagesWorld,
    served: str,  # noqa: F811
    via: str,
) -> None:
    world = stocked
    request_id = file_removal(world)
    base = f"/api/removal-requests/{request_id}"
    with (
        signed_in(served, "officer") as officer,
        signed_in(served, "judge") as judge,
        signed_in(served, "other-officer") as other,
    ):
        assert judge.post(f"{base}/review", json={"note": "受理"}, headers=API).status_code == 200
        assert judge.post(f"{base}/approve", json={"reasons": "债务已清偿"}, headers=API).status_code == 200
        with world.session_factory() as session:
            command = session.scalars(select(CourtCommand).where(CourtCommand.action == "disarm")).one()
        ack = {"command_id": command.id, "action": "disarm", "result": "disarmed"}
        world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_ACK, ack)))
        assert f'id="seal-{SEAL}"' not in other.get("/").text  # not their case, not in stock yet
        with streams((other, "/"), (officer, "/"), (officer, f"/seals/{SEAL}")) as (stock, own, seal_page):
            warmed(world, stock, STOCK)
            warmed(world, own, SEAL)
            if via == "api":
                lifted = officer.post(f"{base}/lifted", json={"note": "现场已拆除"}, headers=API)
            else:  # the case page's form
                page = f"/cases/{quote(CASE, safe='')}"
                form = {"note": "现场已拆除", "csrf_token": csrf_of(officer.get(page).text)}
                lifted = officer.post(f"{page}/removal/{request_id}/lifted", data=form)
            assert lifted.status_code in (200, 303), lifted.text
            # Another case's officer: the seal is in stock now, unbound and without a word of the lifted case.
            come = stock.until(grid)
            assert f'id="seal-{SEAL}"' in come and UNBOUND in come
            assert CASE not in come and quote(CASE, safe="") not in come and PLACE not in come
            # The case's officer: its tile says it is bound to no case now; its page too.
            own.until(lambda u: f'id="seal-{SEAL}"' in u and UNBOUND in u)
            seal_page.until(lambda u: UNBOUND in u)
