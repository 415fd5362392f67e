"""The overview's stream after it sent the whole grid of tiles (a seal came or went): what it remembered of each tile
before is forgotten, so a tile that comes back to what it was before the grid is sent again. A real court server
(uvicorn) and one long stream, read as the browser would."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import update

from server.config import WebSettings
from server.core.db import session_scope
from server.core.live import Change
from server.seals.models import Seal
from server.seals.registry import register_seal
from tests.agent.helpers import wait_until
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, PagesWorld
from tests.web.test_live_stream import live_url_of
from tests.web.test_live_stream_served import served, signed_in_client  # noqa: F401


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=1.0, stream_max_s=300, write_timeout_s=2)


def _place(world: PagesWorld, device_id: str, location: str) -> None:
    with session_scope(world.session_factory) as s:
        s.execute(update(Seal).where(Seal.device_id == device_id).values(location=location))


def _updates(q: queue.Queue[str], expected: Callable[[str], bool], limit_s: float = 20.0) -> list[str]:
    """The updates that came until one is ``expected`` (at most ``limit_s``), and any that follow within 0.5 s."""
    out: list[str] = []
    deadline = time.monotonic() + limit_s
    while not any(expected(u) for u in out) and (left := deadline - time.monotonic()) > 0:
        try:
            out.append(q.get(timeout=left))
        except queue.Empty:
            break
    time.sleep(0.5)  # what should not come with it would come now
    while not q.empty():
        out.append(q.get())
    return out


def test_a_tile_back_to_what_it_was_before_the_grid_is_sent_again(world: PagesWorld, served: str) -> None:  # noqa: F811
    x = SimulatedSeal("seal-x", CASE)
    y = SimulatedSeal("seal-y", CASE)
    with session_scope(world.session_factory) as s:  # a seal never heard from: its tile does not move with the clock
        register_seal(s, actor=None, device_id="seal-x", case_no=CASE, public_key=x.public_key, location="PLACE-A")
    got: queue.Queue[str] = queue.Queue()
    with signed_in_client(served) as client:
        live = live_url_of(client.get("/").text)
        with client.stream("GET", live) as response:

            def read() -> None:
                block: list[str] = []
                try:
                    for line in response.iter_lines():
                        if line == "":
                            if block and block[0] == "event: update":
                                got.put("\n".join(block))
                            block = []
                        else:
                            block.append(line)
                except httpx.HTTPError:  # the test closes the stream under this reader when it ends
                    pass

            threading.Thread(target=read, daemon=True).start()
            assert wait_until(lambda: world.hub.subscribers == 1, 20)
            # 1. seal-x's place changes: its tile alone is sent
            _place(world, "seal-x", "PLACE-B")
            world.hub.publish([Change("status", "seal-x")])
            u1 = _updates(got, lambda u: "PLACE-B" in u)
            assert any("PLACE-B" in u for u in u1) and not any('id="tiles"' in u for u in u1)
            # 2. seal-x back to PLACE-A, in one batch with a new seal of the case: the whole grid
            _place(world, "seal-x", "PLACE-A")
            with session_scope(world.session_factory) as s:
                register_seal(s, actor=None, device_id="seal-y", case_no=CASE, public_key=y.public_key)
            world.hub.publish([Change("status", "seal-x"), Change("status", "seal-y")])
            u2 = _updates(got, lambda u: 'id="tiles"' in u)
            assert any('id="tiles"' in u and "PLACE-A" in u for u in u2)
            # 3. seal-x moves to PLACE-B again: the browser shows PLACE-A (from the grid); it must be told
            _place(world, "seal-x", "PLACE-B")
            world.hub.publish([Change("status", "seal-x")])
            u3 = _updates(got, lambda u: "PLACE-B" in u)
            assert any("PLACE-B" in u for u in u3), (
                "seal-x's tile change was never sent: the browser still shows PLACE-A"
            )
