"""Binding a seal, unbinding it, registering one, assigning a user to a case or taking them off it and closing or
editing a case publish their changes on the live bus after the commit — for the old case and the new — so that the
open pages show them at once, not when the seal first speaks in its new case."""

from __future__ import annotations

import threading
from urllib.parse import quote

import pytest

from seal_protocol.signing import generate_signing_key, public_key_b64
from server.config import WebSettings
from server.core.live import Change
from tests.agent.helpers import wait_until
from tests.web.conftest import CASE, OTHER_CASE, SEAL, PagesWorld
from tests.web.test_live_stream import events, live_url_of

API = {"X-Requested-With": "XMLHttpRequest"}


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(heartbeat_s=0.3, stream_max_s=8)  # long against a loaded machine: CI once ended it first


@pytest.fixture
def published(world: PagesWorld) -> list[Change]:
    """Every change published on the live bus from now on."""
    changes: list[Change] = []
    world.hub.forward_to(changes.extend)
    return changes


def test_moving_a_seal_updates_both_cases_overviews_at_once(world: PagesWorld, published: list[Change]) -> None:
    with world.client("clerk") as clerk, world.client("judge") as judge, world.client("other-judge") as other:
        texts: dict[str, str] = {}
        readers = [
            threading.Thread(target=lambda c=c, n=n: texts.setdefault(n, c.get(live_url_of(c.get("/").text)).text))
            for n, c in (("judge", judge), ("other", other))
        ]
        for reader in readers:
            reader.start()
        assert wait_until(lambda: world.hub.subscribers >= 2, 10)
        assert clerk.delete(f"/api/seals/{SEAL}/binding", headers=API).status_code == 204
        moved = clerk.put(f"/api/seals/{SEAL}/binding", json={"case_no": OTHER_CASE, "location": "B"}, headers=API)
        assert moved.status_code == 200, moved.text
        for reader in readers:
            reader.join(30)
    assert published == [Change("binding", SEAL, CASE), Change("binding", SEAL, OTHER_CASE)]
    # The seal never spoke in its new case: the grids changed because of the move itself.
    judge_grids = [m["data"] for m in events(texts["judge"]) if m["event"] == "update" and 'id="tiles"' in m["data"]]
    other_grids = [m["data"] for m in events(texts["other"]) if m["event"] == "update" and 'id="tiles"' in m["data"]]
    assert judge_grids and f'id="seal-{SEAL}"' not in judge_grids[-1], "case A's overview still shows the seal"
    assert other_grids and f'id="seal-{SEAL}"' in other_grids[-1], "case B's overview does not show the seal yet"


def test_registering_assigning_and_closing_are_published(world: PagesWorld, published: list[Change]) -> None:
    key = generate_signing_key()
    with world.client("clerk") as clerk:
        body = {"device_id": "seal-web-new", "public_key": public_key_b64(key), "location": "仓库"}
        assert clerk.post("/api/seals", json=body, headers=API).status_code == 201
        case = quote(OTHER_CASE, safe="")
        assert clerk.post(f"/api/cases/{case}/assignments", json={"username": "judge"}, headers=API).status_code == 201
        assert clerk.delete(f"/api/cases/{case}/assignments/judge", headers=API).status_code == 204
        assert clerk.patch(f"/api/cases/{case}", json={"judge": "赵法官"}, headers=API).status_code == 200
        closed = clerk.put(f"/api/cases/{case}/status", json={"status": "closed", "note": "结案"}, headers=API)
        assert closed.status_code == 200, closed.text
    assert published == [
        Change("seal", "seal-web-new"),
        Change("assignment", case_no=OTHER_CASE),
        Change("assignment", case_no=OTHER_CASE),
        Change("case", case_no=OTHER_CASE),
        Change("case", case_no=OTHER_CASE),
    ]
