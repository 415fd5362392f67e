"""The request's history (办理记录) as the debtor's portal and the creditor's page show it: every note is Chinese
first — the people's notes as they wrote them (in Chinese here), the server's own notes in the page's language
(Chinese here; the API's ``中文 / English``) — never the server's English alone (``disarm sent to 2 seal(s)``). A
note the server stored English only, before its notes were written so, is shown with the step's Chinese before it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.core.db import SessionFactory
from server.removal.models import RemovalStep
from server.removal.shown import step_shown
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, c, make_world

CHINESE = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def history_notes(world: RemovalWorld, who: str) -> list[str]:
    """The notes of the history on the party's page, as its reader reads them (the tags taken off)."""
    prefix = "/portal" if who == "debtor" else "/creditor"
    page = world.client.get(f"{prefix}/cases/{c(CASE_A)}", headers=world.as_(who))
    assert page.status_code == 200, page.text[:300]
    histories = re.findall(r'<details class="history">(.*?)</details>', page.text, re.S)
    assert histories, "no history on the page"
    notes = [n for h in histories for n in re.findall(r'<span class="text note">(.*?)</span>', h, re.S)]
    return [html.unescape(re.sub(r"<[^>]+>", "", note)).strip() for note in notes]


def english_only(notes: list[str]) -> list[str]:
    """The notes whose first part (before `` / ``) has no Chinese."""
    return [note for note in notes if not CHINESE.search(note.split(" / ")[0])]


def test_every_history_note_on_the_parties_pages_is_chinese_first(world: RemovalWorld) -> None:
    """Approved (the server's note of the disarm sent), one seal lifted without its ack by the judge's decision
    (the server's note naming how each seal stood), then heard armed again (the server's note that takes the
    request back), re-sent and acknowledged: the debtor and the creditor read every note Chinese first."""
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.expire(commands["seal-a2"].id)
    world.ok("judge", request_id, "lift-without-ack", {"device_ids": ["seal-a2"], "reasons": "封条失联"})
    world.heard("seal-a2", armed=True)
    resent = world.ok("judge", request_id, "resend-disarm", {"note": "封条又上线了"})
    world.answer("seal-a2", resent["seals"][1]["command_id"])
    judge = world.read(request_id, "judge")
    assert judge["state"] == "disarmed"
    actions = [step["action"] for step in judge["history"]]
    assert {"issue_disarm", "confirm_disarmed", "armed_again"} <= set(actions), actions
    assert english_only([step["note"] for step in judge["history"] if step["note"]]) == []  # the API's too
    for who in ("debtor", "creditor"):
        notes = history_notes(world, who)
        assert notes and english_only(notes) == [], (who, notes)
    assert "已向 2 个电子封条发出解除布防指令" in history_notes(world, "debtor")  # the page's language only
    assert not any("the signed disarm was issued" in note for note in history_notes(world, "debtor"))


def test_a_server_note_stored_english_only_is_shown_with_its_chinese_first() -> None:
    """Steps stored before the server's notes were written Chinese first keep their English note: it is shown after
    the step's Chinese. A person's note is shown as written."""
    at = datetime(2025, 1, 1, tzinfo=UTC)

    def step(action: str, note: str) -> RemovalStep:
        return RemovalStep(
            request_id=1, at=at, actor="-", action=action, from_state="approved", to_state="disarm_pending", note=note
        )

    shown = step_shown(step("issue_disarm", "disarm sent to 2 seal(s)"), full=False)
    assert shown.note == "已向电子封条发出解除布防指令 / disarm sent to 2 seal(s)"
    old = "each seal acknowledged the disarm with its signed command_ack"
    assert step_shown(step("confirm_disarmed", old), full=True).note.startswith("解除布防已办结")
    written = "已向 2 个电子封条发出解除布防指令 / the signed disarm was issued to 2 seal(s)"
    assert step_shown(step("issue_disarm", written), full=False).note == written
    assert step_shown(step("review", "Taken up"), full=False).note == "Taken up"
