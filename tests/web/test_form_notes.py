"""Every page form that takes a note refuses a NUL (which PostgreSQL cannot store) with 422, as the API does: one
shared field type (:mod:`server.web.form_fields`), and nothing stored."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import select

from server.alarms.models import Alarm
from server.seals.cases import find_case
from tests.web.conftest import CASE, OTHER_CASE, PagesWorld, csrf_of

HTMX = {"X-Requested-With": "XMLHttpRequest", "HX-Request": "true"}


def alarm_state(world: PagesWorld) -> tuple[str, str | None]:
    with world.session_factory() as session:
        alarm = session.scalars(select(Alarm).where(Alarm.id == world.alarm_id)).one()
        return alarm.state, alarm.acknowledged_note


@pytest.mark.parametrize("where", ["/alarms/{id}/ack", "/cases/{case}/alarms/{id}/ack"])
def test_acknowledging_with_a_nul_in_the_note_is_refused(world: PagesWorld, where: str) -> None:
    path = where.format(id=world.alarm_id, case=quote(CASE, safe=""))
    with world.client("judge") as client:
        assert client.post(path, data={"note": "a\x00b"}, headers=HTMX).status_code == 422
        assert alarm_state(world) == ("open", None)
        answer = client.post(path, data={"note": "已到现场 / on site"}, headers=HTMX)
        assert answer.status_code == 200 and alarm_state(world) == ("acknowledged", "已到现场 / on site")


def test_closing_a_case_with_a_nul_in_the_note_is_refused(world: PagesWorld) -> None:
    with world.client("clerk") as clerk:
        token = csrf_of(clerk.get("/admin/cases").text)
        path = f"/admin/cases/{quote(OTHER_CASE, safe='')}/close"
        assert clerk.post(path, data={"note": "a\x00b", "csrf_token": token}).status_code == 422
        with world.session_factory() as session:
            case = find_case(session, case_no=OTHER_CASE)
            assert case is not None and case.status != "closed"
        assert clerk.post(path, data={"note": "结案 / closed", "csrf_token": token}).status_code == 303
