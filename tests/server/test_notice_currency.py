"""Whether a notice on the door is current, not only genuine: the verdict recomputes the facts the court would print
now (a changed phone, a term ended) and shows the seal's armed state only under the binding the notice was issued
under. Found by a hostile review: the old verdict said "authentic" for a paper the court itself refused to print, and
an old paper told its seal's state in another case."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import quote

from seal_protocol import EventType
from seal_protocol.signing import load_signing_key
from server.core.base import utc_now
from server.core.db import session_scope
from server.notices.models import Notice
from server.notices.service import token_of
from server.seals.cases import add_case
from server.seals.registry import bind_seal, unbind_seal
from tests.server.helpers import COURT_CODE
from tests.server.test_notices import AUTHENTIC, CASE, DEVICE, NO_LONGER, World
from tests.server.test_notices import world as notices_world

OTHER = f"(2022){COURT_CODE}执55号"
world = notices_world  # the fixture of test_notices: a court, a case with every fact, its seal bound, staff


def printed(world: World) -> str:
    """The token of the notice printed now (through the API, as the clerk prints it)."""
    world.pdf()
    key = load_signing_key(world.tmp_path / "notice.key")
    with world.session_factory() as session:
        notice = session.query(Notice).order_by(Notice.id.desc()).first()
        assert notice is not None
        return token_of(notice, key)


def next_second(world: World) -> None:
    """Wait until the second the latest notice was issued in is over: a notice carries its issue in whole seconds,
    so a binding begun in that same second is taken as the one it was issued under."""
    with world.session_factory() as session:
        notice = session.query(Notice).order_by(Notice.id.desc()).first()
        assert notice is not None
        issued_at = notice.issued_at
    while utc_now() < issued_at + timedelta(seconds=1):
        time.sleep(0.05)


def verdict(world: World, token: str) -> dict[str, object]:
    response = world.client.get("/api/notices/verify", params={"token": token})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def patch_case(world: World, changes: dict[str, object]) -> None:
    response = world.client.patch(f"/api/cases/{quote(CASE, safe='')}", json=changes, headers=world.headers())
    assert response.status_code == 200, response.text


def test_a_notice_whose_term_the_clerk_ended_is_genuine_but_outdated(world: World) -> None:
    token = printed(world)
    ended = (utc_now() - timedelta(days=2)).date()
    patch_case(world, {"seizure_expires_on": ended.isoformat()})
    # the court refuses to print it now …
    response = world.client.get(f"/api/seals/{DEVICE}/notice.pdf", headers=world.headers())
    assert response.status_code == 409 and "expired" in response.json()["detail"]
    # … and the old paper no longer verifies as current, though it is the court's own
    v = verdict(world, token)
    assert (v["authentic"], v["genuine"], v["reason"]) == (False, True, "outdated")
    outdated = v["outdated"]
    assert isinstance(outdated, dict)
    assert outdated["term_ended_on"] == ended.isoformat() and outdated["changed"] == ["seizure_expires_on"]
    assert f"已于 {ended.isoformat()} 届满" in outdated["text"] and f"ended on {ended.isoformat()}" in outdated["text"]
    assert isinstance(v["reason_text"], str) and v["reason_text"].startswith("公告已过时")
    assert v["notice"] is not None  # what it printed is still shown
    page = world.client.get(f"/notice/{token}").text
    assert NO_LONGER in page and AUTHENTIC not in page and f"已于 {ended.isoformat()} 届满" in page
    assert "Not an authentic notice of this court" not in page  # genuine: not told as a forgery


def test_an_old_paper_is_outdated_once_the_judge_s_phone_changes_and_the_reprint_is_current(world: World) -> None:
    token = printed(world)
    patch_case(world, {"judge_phone": "0510-99999999"})
    v = verdict(world, token)
    assert (v["authentic"], v["genuine"], v["reason"]) == (False, True, "outdated")
    outdated = v["outdated"]
    assert isinstance(outdated, dict) and outdated["changed"] == ["judge_phone"] and outdated["term_ended_on"] is None
    assert "法官电话" in outdated["text"] and "Judge's telephone" in outdated["text"]
    page = world.client.get(f"/notice/{token}").text
    assert NO_LONGER in page and "法官电话已与本院现行记录不符" in page
    new = printed(world)
    assert new != token
    assert verdict(world, new)["authentic"] is True
    assert verdict(world, token)["reason"] == "superseded"


def test_a_current_notice_is_authentic_and_genuine(world: World) -> None:
    token = printed(world)
    patch_case(world, {"judge_phone": "0510-85001234"})  # the same value: nothing changed
    v = verdict(world, token)
    assert (v["authentic"], v["genuine"], v["reason"], v["outdated"]) == (True, True, None, None)


def test_an_old_notice_does_not_tell_its_seal_s_state_in_another_case(world: World) -> None:
    token = printed(world)
    world.send(world.seal.event(EventType.AGENT_STARTED, {"armed": True}))
    assert verdict(world, token)["seal"] == {
        "armed": True,
        "armed_at": None,
        "still_bound": True,
        "armed_hidden": False,
    }
    with session_scope(world.session_factory) as session:
        add_case(session, actor=None, case_no=OTHER, judge="李法官", judge_phone="0510-1", address="别处")
    assert world.client.delete(f"/api/seals/{DEVICE}/binding", headers=world.headers("officer")).status_code == 204
    with session_scope(world.session_factory) as session:
        bind_seal(session, actor=None, device_id=DEVICE, case_no=OTHER)
    world.seal.case_no = OTHER
    seen = []
    for armed in (False, True):
        world.send(world.seal.event(EventType.HEARTBEAT, {"armed": armed, "uptime_s": 5}))
        v = verdict(world, token)
        assert v["genuine"] is True and v["authentic"] is False
        seen.append(v["seal"])
        page = world.client.get(f"/notice/{token}").text
        assert "封条已不在本案，不显示其状态" in page and "布防中" not in page and "已撤防" not in page
    assert seen == [{"armed": None, "armed_at": None, "still_bound": False, "armed_hidden": False}] * 2


def test_a_notice_tells_only_its_own_binding_s_state_and_not_a_binding_begun_after_it(world: World) -> None:
    old = printed(world)
    world.send(world.seal.event(EventType.AGENT_STARTED, {"armed": True}))
    next_second(world)
    with session_scope(world.session_factory) as session:  # the binding alone, its notice not revoked
        unbind_seal(session, actor=None, device_id=DEVICE)
    with session_scope(world.session_factory) as session:  # … and bound again to the same case
        bind_seal(session, actor=None, device_id=DEVICE, case_no=CASE)
    v = verdict(world, old)  # the paper of the ended binding does not stand for the new one
    assert (v["authentic"], v["reason"]) == (False, "revoked")
    assert v["seal"] == {"armed": None, "armed_at": None, "still_bound": False, "armed_hidden": False}
    new = printed(world)
    v = verdict(world, new)  # the seal said "armed" before this binding began: not this binding's state
    assert v["authentic"] is True and v["seal"] == {
        "armed": None,
        "armed_at": None,
        "still_bound": True,
        "armed_hidden": False,
    }
    world.send(world.seal.event(EventType.HEARTBEAT, {"armed": False, "uptime_s": 5}))
    assert verdict(world, new)["seal"] == {"armed": False, "armed_at": None, "still_bound": True, "armed_hidden": False}
