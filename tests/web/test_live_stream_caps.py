"""One sign-in session holds at most STREAMS_PER_SESSION live streams and one user STREAMS_PER_USER: one more is
refused with 429 before it starts (the streams already open go on, and a closed one frees its place); the streams'
renders run at most LIVE_RENDERS at once, on threads of their own, so that the pages and the API still answer.
On a real server (uvicorn): TestClient reads a stream to its end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from seal_dev.broker import free_port
from server.config import WebSettings
from server.web import live
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import CASE, PagesWorld
from tests.web.test_live_stream import run_apart


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=1.0, stream_max_s=120)


@pytest.fixture
def served(world: PagesWorld) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(world.app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, 30)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        world.hub.close()
        server.should_exit = True
        thread.join(10)


async def signed_in(base: str, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=64))
    answer = await client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return client


class Held:
    """A live stream held open by a task (its status once answered), until cancelled."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.status: int | None = None
        self.text = ""
        self.task = asyncio.create_task(self._hold(client, url))

    async def _hold(self, client: httpx.AsyncClient, url: str) -> None:
        async with client.stream("GET", url) as response:
            self.status = response.status_code
            async for chunk in response.aiter_text():
                self.text += chunk

    async def answered(self) -> int:
        while self.status is None:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self.status


def test_a_session_and_a_user_hold_a_bounded_number_of_streams(world: PagesWorld, served: str) -> None:
    async def scenario() -> None:
        first, second, third = [await signed_in(served, "creditor") for _ in range(3)]
        judge = await signed_in(served, "judge")
        held = [Held(first, "/live?view=overview") for _ in range(live.STREAMS_PER_SESSION)]
        assert [await h.answered() for h in held] == [200] * live.STREAMS_PER_SESSION
        one_more = await first.get("/live?view=overview")
        assert one_more.status_code == 429 and "Too many live connections" in one_more.text
        assert one_more.headers["retry-after"] == str(live.REFUSED_RETRY_S)
        assert world.hub.subscribers == live.STREAMS_PER_SESSION, "a refused stream holds no subscription"
        # Another session of the same user: up to the user's cap, then refused.
        more = [Held(second, "/live?view=overview") for _ in range(live.STREAMS_PER_USER - live.STREAMS_PER_SESSION)]
        assert {await h.answered() for h in more} == {200}
        assert (await third.get("/live?view=overview")).status_code == 429
        # Everyone else is served as ever: the judge's page and stream.
        assert (await judge.get("/")).status_code == 200
        judge_stream = Held(judge, "/live?view=overview")
        assert await judge_stream.answered() == 200
        # A stream that ends frees its place.
        held[0].task.cancel()
        subscribed = live.STREAMS_PER_USER + 1
        while world.hub.subscribers >= subscribed:
            await asyncio.sleep(0.02)
        again = Held(third, "/live?view=overview")
        assert await again.answered() == 200
        for h in [*held, *more, judge_stream, again]:
            h.task.cancel()
        await asyncio.gather(*(h.task for h in [*held, *more, judge_stream, again]), return_exceptions=True)
        for client in (first, second, third, judge):
            await client.aclose()

    run_apart(scenario())


def test_live_renders_take_a_bounded_number_of_threads(
    world: PagesWorld, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    lock = threading.Lock()
    rendering = [0, 0]  # now, most at once
    real = live._Stream._render_now

    def slow_render(self: Any, changes: Any) -> Any:
        with lock:
            rendering[0] += 1
            rendering[1] = max(rendering)
        try:
            release.wait(30)
            return real(self, changes)
        finally:
            with lock:
                rendering[0] -= 1

    monkeypatch.setattr(live._Stream, "_render_now", slow_render)

    async def scenario() -> None:
        judge = await signed_in(served, "judge")
        url = f"/live?view=case&case_no={quote(CASE, safe='')}"
        held = [Held(judge, url) for _ in range(live.STREAMS_PER_SESSION)]  # each renders its page when it starts
        while rendering[0] < live.LIVE_RENDERS:
            await asyncio.sleep(0.02)
        # Every render is blocked, and the pages and the API still answer.
        assert (await judge.get("/api/health")).status_code == 200
        assert (await judge.get(f"/cases/{quote(CASE, safe='')}")).status_code == 200
        assert rendering[1] == live.LIVE_RENDERS, f"{rendering[1]} live renders at once"
        release.set()
        assert [await h.answered() for h in held] == [200] * live.STREAMS_PER_SESSION
        while not all("event: heartbeat" in h.text for h in held):
            await asyncio.sleep(0.05)
        assert rendering[1] == live.LIVE_RENDERS
        for h in held:
            h.task.cancel()
        await asyncio.gather(*(h.task for h in held), return_exceptions=True)
        await judge.aclose()

    run_apart(scenario())
