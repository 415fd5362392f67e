"""The server process holds at most ``[web] max_streams`` live streams, all users' together: one more, from anyone, is
refused with 429 (both languages, Retry-After) before it starts, and holds nothing; a tab's reconnection still takes
its own stream's place; a stream that ends frees its place. Old code: no total at all — 500 streams of 50 users made
a third party's update take 5 s instead of 0.15 s (a hostile review against a real ``seal-server run``).
On a real server (uvicorn)."""

from __future__ import annotations

import asyncio

import pytest

from server.config import WebSettings
from server.web import live
from tests.web.conftest import PagesWorld
from tests.web.test_live_stream import run_apart
from tests.web.test_live_stream_caps import Held, served, signed_in  # noqa: F401 - fixtures
from tests.web.test_live_stream_tabs import settled, tab_id

TOTAL = 3


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=1.0, stream_max_s=120, max_streams=TOTAL)


def test_the_process_holds_a_bounded_number_of_streams_in_all(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
) -> None:
    async def scenario() -> None:
        creditor, judge, clerk = [await signed_in(served, who) for who in ("creditor", "judge", "clerk")]
        tab = tab_id()
        held = [Held(creditor, "/live?view=overview"), Held(creditor, f"/live?view=overview&tab={tab}")]
        held.append(Held(judge, "/live?view=overview"))
        assert [await h.answered() for h in held] == [200] * TOTAL
        # A user who holds none is refused: the court holds as many as it may.
        refused = await clerk.get("/live?view=overview")
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == str(live.REFUSED_RETRY_S)
        assert "实时连接已满" in refused.text and "try again later" in refused.text
        assert refused.text.index("实时") < refused.text.index("The server")
        assert world.hub.subscribers == TOTAL, "a refused stream holds no subscription"
        # A tab that reconnects takes its own stream's place, full as the court is.
        again = Held(creditor, f"/live?view=overview&tab={tab}")
        assert await again.answered() == 200
        await asyncio.wait_for(held[1].task, 10)
        assert await settled(world, TOTAL) == TOTAL
        # A stream that ends frees its place.
        held[0].task.cancel()
        await settled(world, TOTAL - 1)
        clerk_stream = Held(clerk, "/live?view=overview")
        assert await clerk_stream.answered() == 200
        streams = [held[2], again, clerk_stream]
        for h in streams:
            h.task.cancel()
        await asyncio.gather(*(h.task for h in [*held, *streams]), return_exceptions=True)
        for client in (creditor, judge, clerk):
            await client.aclose()

    run_apart(scenario())


def test_the_total_is_configured_and_defaults_to_hundreds() -> None:
    assert 100 <= WebSettings().max_streams <= 1000
    assert live.STREAMS_PER_USER < WebSettings().max_streams
