"""The live stream on a real server (uvicorn in a thread), with streams that last: a browser that leaves is let go
at once, a stopping server ends every stream, a session that ends mid-stream gets "signin"."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from seal_dev.broker import free_port
from seal_protocol import EventType
from server.auth.sessions import revoke_user_sessions
from server.auth.users import get_user
from server.config import WebSettings
from server.core.base import utc_now
from server.core.db import session_scope
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD
from tests.web.conftest import PagesWorld


@pytest.fixture
def web_settings() -> WebSettings:
    """Streams that would last a minute: what ends them in these tests is what the test is about."""
    return WebSettings(heartbeat_s=0.2, stream_max_s=60)


@pytest.fixture
def served(world: PagesWorld) -> Iterator[str]:
    """The world's app under uvicorn in a thread; its base URL."""
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


@contextmanager
def signed_in_client(base: str) -> Iterator[httpx.Client]:
    """A client with the judge's session cookie (as a browser has after signing in)."""
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post("/api/auth/login", json={"username": "judge", "password": PASSWORD})
        assert login.status_code == 200
        client.headers.pop("Authorization", None)
        yield client


def test_a_browser_that_leaves_is_let_go_at_once(world: PagesWorld, served: str) -> None:
    with signed_in_client(served) as client:
        with client.stream("GET", "/live?view=overview") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert any(line == "event: heartbeat" for line in lines)
            assert world.hub.subscribers == 1
        assert wait_until(lambda: world.hub.subscribers == 0, 20)  # not the stream_max_s of 60


def test_a_stopping_server_ends_every_stream_and_a_revoked_session_gets_signin(world: PagesWorld, served: str) -> None:
    with signed_in_client(served) as client:
        with client.stream("GET", "/live?view=overview") as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("event: ")) == "event: heartbeat"
            with session_scope(world.session_factory) as session:
                revoke_user_sessions(session, user_id=get_user(session, username="judge").id, now=utc_now())
            world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT)))  # the next render checks
            rest = [line for line in lines if line.startswith("event: ")]
        assert rest[-1] == "event: signin"
        assert wait_until(lambda: world.hub.subscribers == 0, 20)  # not the stream_max_s of 60
    with signed_in_client(served) as client, client.stream("GET", "/live?view=overview") as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event: ")) == "event: heartbeat"
        began = time.monotonic()
        world.hub.close()
        assert list(lines) is not None and time.monotonic() - began < 20  # the stream ended, not stream_max_s
