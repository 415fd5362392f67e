"""The upload slots are counted per case, by its canonical number: another spelling of the case in the path (full-width
parentheses, 〔〕, white space — all of which the route's case lookup accepts) is the same case. And an upload's body
must arrive within the deadline: one sent a byte at a time is cut off with a 408, and its slot is free again."""

from __future__ import annotations

import asyncio
from typing import Any

from server.api.body_limit import MAX_UPLOADS_PER_CASE, BodyLimit, UploadPace, UploadRoute
from server.api.removal_requests import UPLOAD_PATH
from server.config import RemovalSettings
from tests.server.helpers import CASE_A, CASE_B
from tests.server.test_body_limit_uploads import _held_app, _may_upload, _poster

MiB = 1024 * 1024
SPELLINGS = [
    CASE_A.replace("(", "（").replace(")", "）"),
    CASE_A.replace("(", "〔").replace(")", "〕"),
    " " + CASE_A,
]


def test_another_spelling_of_the_case_takes_no_more_slots() -> None:
    """Old code: four uploads of case A under two spellings took every slot, and case B got 503."""
    release, entered, app = _held_app()
    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)])
    post = _poster(limit)

    async def run() -> None:
        answers: list[list[dict[str, Any]]] = [[] for _ in range(len(SPELLINGS) + 2)]
        held = [asyncio.create_task(post(answers[0], CASE_A))]
        while len(entered) < 1:
            await asyncio.sleep(0.01)
        held.append(asyncio.create_task(post(answers[1], SPELLINGS[0])))
        while len(entered) < MAX_UPLOADS_PER_CASE:
            await asyncio.sleep(0.01)
        for n, spelling in enumerate(SPELLINGS[1:], start=2):
            assert await post(answers[n], spelling) == 0 and answers[n][0]["status"] == 503, spelling
        other = asyncio.create_task(post(answers[-1], CASE_B))  # another case's debtor is still received
        while len(entered) < MAX_UPLOADS_PER_CASE + 1:
            await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*held, other)
        assert answers[-1][0]["status"] == 201
        assert (limit.in_flight, limit.in_flight_by_case) == (0, {})

    asyncio.run(run())


def test_an_upload_trickling_in_is_cut_off_at_the_deadline_and_frees_its_slot() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limit = BodyLimit(app, uploads=[UploadRoute(UPLOAD_PATH, 10 * MiB, _may_upload)], pace=UploadPace(deadline_s=0.3))

    async def run() -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0.05)  # a byte now and then: each gap short, the whole never done
            return {"type": "http.request", "body": b"x", "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            answers.append(message)

        scope = {"type": "http", "method": "POST", "path": f"/api/cases/{CASE_A}/removal-requests", "headers": []}
        await asyncio.wait_for(limit(scope, receive, send), 5)
        assert (limit.in_flight, limit.in_flight_by_case) == (0, {})
        return answers

    answers = asyncio.run(run())
    assert answers[0]["status"] == 408
    said = answers[1]["body"].decode()
    assert "上传未能在 0.3 秒内完成" in said and "did not arrive within 0.3 s" in said, said
    assert said.index("上传") < said.index("the upload")


def test_the_deadline_is_configured_and_defaults_to_minutes() -> None:
    assert 60 <= RemovalSettings().upload_deadline_s <= 600
    assert RemovalSettings(upload_deadline_s=30).upload_deadline_s == 30
