"""The removal card's acts for a request stuck on a seal that does not answer: the judge lifts it without its
acknowledgement (only seals ``waiting_for_seal`` or ``refused`` are offered) or withdraws the approval; the officer,
confirming the removal, says what was found of each seal lifted without its acknowledgement (required) — each
through the service function the API calls, checked as the API checks, offered only to whom may act."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from server.audit.models import AuditEntry
from server.commands.models import CourtCommand
from server.commands.service import expire_due
from server.core.base import utc_now
from server.core.db import session_scope
from server.removal.disarm import settle
from server.removal.models import RemovalRequest
from server.seals.models import Case
from server.seals.registry import register_seal
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, SEAL, PagesWorld, csrf_of
from tests.web.test_case_pages import CASE_URL, HTMX, file_removal

DEAF = "seal-web-2"  # the second seal of the case: it never answers its disarm


def second_seal(world: PagesWorld) -> SimulatedSeal:
    seal = SimulatedSeal(DEAF, CASE)
    with session_scope(world.session_factory) as session:
        register_seal(session, actor=None, device_id=DEAF, case_no=CASE, public_key=seal.public_key, location="后门")
    return seal


def disarms(world: PagesWorld) -> dict[str, int]:
    with world.session_factory() as session:
        rows = session.scalars(select(CourtCommand).where(CourtCommand.action == "disarm"))
        return {row.device_id: row.id for row in rows}


def approved_with_a_deaf_seal(world: PagesWorld) -> int:
    """A request the judge approved from the page; :data:`DEAF`'s disarm expired unanswered (``waiting_for_seal``),
    :data:`SEAL`'s still valid (``sent``)."""
    second_seal(world)
    request_id = file_removal(world)
    base = f"{CASE_URL}/removal/{request_id}"
    with world.client("judge") as client:
        assert client.post(f"{base}/review", data={"note": "受理"}, headers=HTMX).status_code == 200
        assert client.post(f"{base}/approve", data={"reasons": "债务已清偿"}, headers=HTMX).status_code == 200
    with world.session_factory() as session:
        expire_due(session, now=utc_now() + timedelta(days=1), command_ids=[disarms(world)[DEAF]])
        session.commit()
    return request_id


def seal_acks(world: PagesWorld, request_id: int) -> None:
    """:data:`SEAL`'s signed acknowledgement of its disarm, through the ingest; the request settled."""
    ack = {"command_id": disarms(world)[SEAL], "action": "disarm", "result": "disarmed"}
    world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_ACK, ack)))
    with session_scope(world.session_factory) as session:
        settle(session, request_id=request_id, now=utc_now())


def state_of(world: PagesWorld, request_id: int) -> str:
    with world.session_factory() as session:
        request = session.get(RemovalRequest, request_id)
        assert request is not None
        return request.state


def card_of(html: str, request_id: int) -> str:
    return html.split(f'id="removal-{request_id}"')[1].split("</article>")[0]


def waived(world: PagesWorld, request_id: int) -> None:
    with world.client("judge") as client:
        data = {"device_ids": [DEAF], "reasons": "封条被盗，无法应答"}
        answer = client.post(f"{CASE_URL}/removal/{request_id}/lift-without-ack", data=data, headers=HTMX)
        assert answer.status_code == 200, answer.text


def test_the_judge_lifts_a_seal_that_does_not_answer_without_its_acknowledgement(world: PagesWorld) -> None:
    request_id = approved_with_a_deaf_seal(world)
    base = f"{CASE_URL}/removal/{request_id}"
    with world.client("judge") as client:
        card = card_of(client.get(CASE_URL).text, request_id)
        assert 'data-act="lift-without-ack"' in card and 'data-act="abort"' in card
        assert f'data-waivable="{DEAF}"' in card and f'data-waivable="{SEAL}"' not in card  # SEAL's disarm is valid
        assert "不待封条应答解除" in card and 'data-act="lift"' not in card  # the officer's
        client.cookies.set("seal_lang", "en")
        english = card_of(client.get(CASE_URL).text, request_id)
        assert "⟦" not in english and "Lift without the seals&#39; answer" in english
        assert "Withdraw the approval and re-arm" in english
        client.cookies.set("seal_lang", "zh-CN")
        # A seal whose disarm is still valid is not the judge's to waive: the API's 409, in the court's words.
        refused = client.post(f"{base}/lift-without-ack", data={"device_ids": [SEAL], "reasons": "x"}, headers=HTMX)
        assert refused.status_code == 409 and "只有解除布防指令过期未应答或拒绝了指令的封条" in refused.text
        assert client.post(f"{base}/lift-without-ack", data={"reasons": "x"}, headers=HTMX).status_code == 422
        blank = {"device_ids": [DEAF], "reasons": ""}
        assert client.post(f"{base}/lift-without-ack", data=blank, headers=HTMX).status_code == 422
        # A plain form (no JS): 303 back to the card.
        token = csrf_of(client.get(CASE_URL).text)
        data = {"device_ids": [DEAF], "reasons": "封条被盗，无法应答", "csrf_token": token}
        answer = client.post(f"{base}/lift-without-ack", data=data)
        assert answer.status_code == 303 and answer.headers["location"].endswith("#case-removal")
        card = card_of(client.get(CASE_URL).text, request_id)
        assert f'data-device="{DEAF}" data-progress="without_ack"' in card
        assert 'data-act="lift-without-ack"' not in card  # no seal left to waive; the abort stays
        assert 'data-act="abort"' in card and 'data-removal-state="disarm_pending"' in card
    seal_acks(world, request_id)  # the other seal acknowledges: disarmed
    assert state_of(world, request_id) == "disarmed"
    with world.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "removal.lift_without_ack")).one()
        assert entry.details["without_ack"] == [DEAF]
        assert entry.details["as_they_stood"][DEAF]["status"] == "waiting_for_seal"


def test_the_officer_says_what_was_found_of_the_seal_lifted_without_its_acknowledgement(world: PagesWorld) -> None:
    request_id = approved_with_a_deaf_seal(world)
    waived(world, request_id)
    seal_acks(world, request_id)
    base = f"{CASE_URL}/removal/{request_id}"
    with world.client("officer") as client:
        html = client.get(CASE_URL).text
        card = card_of(html, request_id)
        assert 'data-act="lift"' in card and f'data-found="{DEAF}"' in card and f'data-found="{SEAL}"' not in card
        assert f'value="{DEAF}:missing"' in card and "下落不明" in card
        assert re.search(rf'<select [^>]*name="found" required data-found="{DEAF}"', card)
        assert 'data-act="lift-without-ack"' not in card and 'data-act="abort"' not in card  # the judge's
        client.cookies.set("seal_lang", "en")
        english = card_of(client.get(CASE_URL).text, request_id)
        assert "⟦" not in english and "What was found of the seals lifted without their answer" in english
        assert ">Missing<" in english and "Lifted without its answer (the judge&#39;s decision)" in english
        client.cookies.set("seal_lang", "zh-CN")
        # Nothing said of the seal: refused, naming it, in both languages; the request stays as it is.
        token = csrf_of(html)
        refused = client.post(f"{base}/lifted", data={"note": "现场", "found": "", "csrf_token": token})
        assert refused.status_code == 409 and f"封条 {DEAF} 未经应答即解除，请说明现场" in refused.text
        client.cookies.set("seal_lang", "en")
        refused = client.post(f"{base}/lifted", data={"csrf_token": token}, headers=HTMX)
        assert refused.status_code == 409 and f"Seal(s) {DEAF} were lifted without their answer" in refused.text
        client.cookies.set("seal_lang", "zh-CN")
        twice = {"found": [f"{DEAF}:missing", f"{DEAF}:removed"], "csrf_token": token}
        assert client.post(f"{base}/lifted", data=twice).status_code == 422
        bad = client.post(f"{base}/lifted", data={"found": f"{DEAF}:stolen", "csrf_token": token})
        assert bad.status_code == 422
        assert state_of(world, request_id) == "disarmed"
        # Said: lifted, and the audit entry records what was found.
        said = {"note": "封条现场未找到", "found": f"{DEAF}:missing"}
        lifted = client.post(f"{base}/lifted", data=said, headers=HTMX)
        assert lifted.status_code == 200 and 'data-removal-state="lifted"' in lifted.text
        assert 'data-found-as="missing"' in lifted.text and "下落不明" in lifted.text
    assert state_of(world, request_id) == "lifted"
    with world.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "removal.lift")).one()
        assert entry.details["found"] == {DEAF: "missing"} and entry.actor == "officer"
        assert sorted(entry.details["unbound"]) == sorted([SEAL, DEAF])
        case = session.scalars(select(Case).where(Case.case_no == CASE)).one()
        assert case.status == "lifted"


def test_the_judge_withdraws_the_approval_and_the_seals_are_armed_again(world: PagesWorld) -> None:
    request_id = approved_with_a_deaf_seal(world)
    base = f"{CASE_URL}/removal/{request_id}"
    with world.client("judge") as client:
        assert client.post(f"{base}/abort", data={"reasons": ""}, headers=HTMX).status_code == 422
        answer = client.post(f"{base}/abort", data={"reasons": "申请人未履行和解协议"}, headers=HTMX)
        assert answer.status_code == 200 and 'data-removal-state="aborted"' in answer.text
        card = card_of(client.get(CASE_URL).text, request_id)
        assert 'data-act="abort"' not in card and 'data-act="lift-without-ack"' not in card
        again = client.post(f"{base}/abort", data={"reasons": "x"}, headers=HTMX)
        assert again.status_code == 409 and "已撤销准予" in again.text
    assert state_of(world, request_id) == "aborted"
    with world.session_factory() as session:
        arms = session.scalars(select(CourtCommand.device_id).where(CourtCommand.action == "arm")).all()
        assert sorted(arms) == sorted([SEAL, DEAF])
        case = session.scalars(select(Case).where(Case.case_no == CASE)).one()
        assert case.status == "sealed"
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "removal.abort")).one().actor == "judge"


ACTS: list[tuple[str, dict[str, Any]]] = [
    ("lift-without-ack", {"device_ids": [DEAF], "reasons": "x"}),
    ("abort", {"reasons": "x"}),
    ("lifted", {"found": f"{DEAF}:removed"}),
]


@pytest.mark.parametrize("who", ["creditor", "debtor", "clerk", "other-judge"])
def test_the_acts_are_neither_offered_nor_done_for_roles_that_may_not(world: PagesWorld, who: str) -> None:
    request_id = approved_with_a_deaf_seal(world)
    with world.client(who) as client:
        page = client.get(CASE_URL)
        if page.status_code == 200:
            card = card_of(page.text, request_id)
            for act in ("lift-without-ack", "abort", "lift"):
                assert f'data-act="{act}"' not in card, (who, act)
            assert "data-waivable" not in card and "data-found=" not in card
        else:  # the debtor's page is the portal; another case's judge finds no case
            assert page.status_code == (404 if who == "other-judge" else 403)
        for act, data in ACTS:
            answer = client.post(f"{CASE_URL}/removal/{request_id}/{act}", data=data, headers=HTMX)
            assert answer.status_code == (404 if who == "other-judge" else 403), (who, act, answer.status_code)
    with world.client("officer") as officer, world.client("judge") as judge:  # each other's act
        for client, acts in ((officer, ACTS[:2]), (judge, ACTS[2:])):
            for act, data in acts:
                answer = client.post(f"{CASE_URL}/removal/{request_id}/{act}", data=data, headers=HTMX)
                assert answer.status_code == 403, (act, answer.status_code)
    assert state_of(world, request_id) == "disarm_pending"


def test_the_acts_need_the_csrf_proof(world: PagesWorld) -> None:
    request_id = approved_with_a_deaf_seal(world)
    with world.client("judge") as judge, world.client("officer") as officer:
        for client, acts in ((judge, ACTS[:2]), (officer, ACTS[2:])):
            for act, data in acts:
                url = f"{CASE_URL}/removal/{request_id}/{act}"
                assert client.post(url, data=data).status_code == 403, act
                assert client.post(url, data={**data, "csrf_token": "0" * 64}).status_code == 403, act
    assert state_of(world, request_id) == "disarm_pending"
    with world.session_factory() as session:
        assert session.scalars(select(CourtCommand).where(CourtCommand.action == "arm")).all() == []


def test_a_seal_armed_again_after_its_ack_is_offered_a_new_disarm(world: PagesWorld) -> None:
    """:data:`SEAL` acknowledged, then its signed heartbeat says it is armed again (``rearmed``): the judge's card
    offers the resend, as the API allows it — the deaf seal was waived, so nothing else is due."""
    request_id = approved_with_a_deaf_seal(world)
    seal_acks(world, request_id)
    waived(world, request_id)
    world.ingest((world.seal.event_topic, world.seal.event(EventType.HEARTBEAT, {"armed": True, "uptime_s": 5})))
    with world.client("judge") as client:
        card = card_of(client.get(CASE_URL).text, request_id)
        assert f'data-device="{SEAL}" data-progress="rearmed"' in card
        assert 'data-act="resend"' in card
        assert client.post(f"{CASE_URL}/removal/{request_id}/resend", data={}, headers=HTMX).status_code == 200
    assert state_of(world, request_id) == "disarm_pending"
