"""A live stream names its tab (``tab``, made by app.js for each page load): a new stream of the same session and tab
takes the place of the one before it instead of counting against the caps, so that tabs whose network vanished (no
FIN: their former streams linger on the server until a write times out) reconnect at once. The displaced stream ends
(``gap``: ``displaced``) and its subscription is released; a tab id only ever displaces its own session's stream.
On a real server (uvicorn), with sockets that vanish: they stay open and read nothing."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import httpx

from server.web import live
from tests.web.conftest import PagesWorld
from tests.web.test_live_stream import run_apart
from tests.web.test_live_stream_caps import Held, served, signed_in, web_settings  # noqa: F401 - fixtures


def tab_id() -> str:
    return secrets.token_urlsafe(18)  # 24 characters


def cookie_of(client: httpx.AsyncClient) -> str:
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def vanishing(base: str, cookie: str, tab: str | None) -> tuple[socket.socket, bytes]:
    """A stream whose client will vanish (the socket stays open and is never read again), and its status line."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    query = "view=overview" + (f"&tab={tab}" if tab is not None else "")
    sock.sendall(f"GET /live?{query} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
    return sock, sock.recv(12)


def rest_of(sock: socket.socket) -> bytes:
    """What the server sent on ``sock`` until it ended the response (or 10 s passed)."""
    data = b""
    deadline = time.monotonic() + 10
    while not data.endswith(b"0\r\n\r\n") and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def next_heartbeat(sock: socket.socket) -> bytes:
    """What the server sent on ``sock`` until its next heartbeat (or 10 s passed)."""
    data = b""
    deadline = time.monotonic() + 10
    while b"event: heartbeat" not in data and time.monotonic() < deadline:
        data += sock.recv(65536)
    return data


async def settled(world: PagesWorld, subscribers: int) -> int:
    deadline = time.monotonic() + 10
    while world.hub.subscribers != subscribers and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return world.hub.subscribers


def test_tabs_whose_network_vanished_reconnect_at_once(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
) -> None:
    async def scenario() -> None:
        client = await signed_in(served, "creditor")
        cookie = cookie_of(client)
        tabs = [tab_id() for _ in range(5)]
        gone = [vanishing(served, cookie, tab) for tab in tabs]
        assert [status for _sock, status in gone] == [b"HTTP/1.1 200"] * 5
        await asyncio.sleep(1.5)  # they are subscribed, and heartbeats pile up unread
        again = [vanishing(served, cookie, tab) for tab in tabs]
        assert [status for _sock, status in again] == [b"HTTP/1.1 200"] * 5, "a reconnecting tab was refused"
        assert await settled(world, 5) == 5, "the vanished tabs' streams were not released"
        for sock, _status in gone:  # each ended cleanly: its last message, then the end of the response
            rest = rest_of(sock)
            assert b"event: gap\ndata: displaced" in rest, rest[-200:]
            assert rest.endswith(b"0\r\n\r\n"), rest[-80:]
        for sock, _status in again:  # the new streams go on
            assert b"event: heartbeat" in next_heartbeat(sock)
        for sock, _status in [*gone, *again]:
            sock.close()
        assert await settled(world, 0) == 0
        await client.aclose()

    run_apart(scenario())


def test_a_tab_id_displaces_only_its_own_sessions_stream(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
) -> None:
    async def scenario() -> None:
        mine, other_session = [await signed_in(served, "creditor") for _ in range(2)]
        judge = await signed_in(served, "judge")
        tab = tab_id()
        first = Held(mine, f"/live?view=overview&tab={tab}")
        assert await first.answered() == 200
        # The same tab id from another session of the same user, and from another user: streams of their own.
        guessed = [Held(client, f"/live?view=overview&tab={tab}") for client in (other_session, judge)]
        assert [await h.answered() for h in guessed] == [200, 200]
        assert await settled(world, 3) == 3
        await asyncio.sleep(1.5)
        assert not first.task.done() and "displaced" not in first.text, "another session displaced a stream"
        beats = first.text.count("event: heartbeat")
        while first.text.count("event: heartbeat") <= beats:  # it goes on
            await asyncio.sleep(0.05)
        # Its own session's stream of that tab takes its place.
        second = Held(mine, f"/live?view=overview&tab={tab}")
        assert await second.answered() == 200
        await asyncio.wait_for(first.task, 10)
        assert "event: gap\ndata: displaced" in first.text.replace("\r\n", "\n")
        assert await settled(world, 3) == 3
        assert not any(h.task.done() for h in [*guessed, second])
        for h in [*guessed, second]:
            h.task.cancel()
        await asyncio.gather(*(h.task for h in [*guessed, second]), return_exceptions=True)
        for client in (mine, other_session, judge):
            await client.aclose()

    run_apart(scenario())


def test_the_cap_still_counts_distinct_tabs(
    world: PagesWorld,
    served: str,  # noqa: F811 - the fixture imported above
) -> None:
    async def scenario() -> None:
        client = await signed_in(served, "creditor")
        tabs = [tab_id() for _ in range(live.STREAMS_PER_SESSION)]
        held = [Held(client, f"/live?view=overview&tab={tab}") for tab in tabs]
        assert [await h.answered() for h in held] == [200] * live.STREAMS_PER_SESSION
        assert (await client.get(f"/live?view=overview&tab={tab_id()}")).status_code == 429, "a 9th tab was served"
        assert (await client.get("/live?view=overview")).status_code == 429
        # A tab id of the wrong shape is none: it is refused, and displaces nothing.
        for bad in (tabs[0][:15], tabs[0] + "x" * 9, tabs[0][:-1] + ".", tabs[0][:-1] + "%2F"):
            assert (await client.get(f"/live?view=overview&tab={bad}")).status_code == 429, bad
        assert not any(h.task.done() for h in held)
        # One of the 8 tabs reconnects: served, in its former stream's place.
        again = Held(client, f"/live?view=overview&tab={tabs[3]}")
        assert await again.answered() == 200
        await asyncio.wait_for(held[3].task, 10)
        assert await settled(world, live.STREAMS_PER_SESSION) == live.STREAMS_PER_SESSION
        rest = [*held[:3], *held[4:], again]
        assert not any(h.task.done() for h in rest)
        for h in rest:
            h.task.cancel()
        await asyncio.gather(*(h.task for h in rest), return_exceptions=True)
        await client.aclose()

    run_apart(scenario())
