"""What the debtor's portal shows of each seal after the approval: whether it has acknowledged — not whether its
disarm is still valid or expired unanswered, nor when it was sent or answered (that would tell whoever holds the
paper access code which seal is deaf), nor the judge's decision to lift a seal without it; the creditor, who may see
the seals' status, sees it all, and the page says which seals the judge decided to lift without their
acknowledgement."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key
from server.auth.users import get_user
from server.commands.service import expire_due
from server.core.base import utc_now
from server.core.db import session_scope
from server.removal.disarm import resend_disarm
from server.removal.lifting import lift_without_ack
from server.removal.steps import get_request
from server.words import catalogue
from tests.web.conftest import CASE, SEAL, PagesWorld
from tests.web.portal_world import Portal, make_portal, q


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def test_the_debtor_sees_a_seal_that_has_not_answered_as_pending_only(portal: Portal) -> None:
    request_id = portal.file()
    commands = portal.approve(request_id)
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert f'data-device="{SEAL}" data-status="pending"' in page and "处理中" in page
        assert "发出于" not in page  # when the disarm went out
    with portal.world.session_factory() as session:  # the disarm expires unanswered: the seal is deaf
        expire_due(session, now=utc_now() + timedelta(days=1), command_ids=[commands[SEAL]])
        session.commit()
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert f'data-device="{SEAL}" data-status="pending"' in page
        assert "waiting_for_seal" not in page and "等待封条上线" not in page and "发出于" not in page
    with portal.world.client("creditor") as client:
        page = client.get(f"/creditor/cases/{q(CASE)}").text
        assert f'data-device="{SEAL}" data-status="waiting_for_seal"' in page and "发出于" in page
    portal.acknowledge(commands[SEAL])
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert f'data-device="{SEAL}" data-status="pending"' in page  # nor that it answered, while it is open
        assert "应答于" not in page and "已解除布防" not in page  # nor when
    assert portal.state(request_id) == "disarmed"


def test_the_portal_says_which_seals_were_lifted_without_acknowledgement(portal: Portal) -> None:
    request_id = portal.file()
    commands = portal.approve(request_id)
    with session_scope(portal.world.session_factory) as session:
        expire_due(session, now=utc_now() + timedelta(days=1), command_ids=[commands[SEAL]])
        request = get_request(session, request_id=request_id, for_update=True)
        judge = get_user(session, username="judge")
        lift_without_ack(session, actor=judge, request=request, device_ids=[SEAL], reasons="封条失联", now=utc_now())
    assert portal.state(request_id) == "disarmed"
    with portal.world.client("creditor") as client:
        page = client.get(f"/creditor/cases/{q(CASE)}").text
        assert f'data-device="{SEAL}" data-status="without_ack"' in page
        assert f"部分封条未确认解除布防，经法官决定解除：{SEAL}" in page
        assert "每个电子封条均已签名确认解除布防" not in page
        assert "封条失联" in page and "法院处理中" not in page  # the judge's reasons, in the history
    # The debtor is not told which seal is deaf: pending, and the history's steps about seals without their notes.
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert f'data-device="{SEAL}" data-status="pending"' in page
        assert "without_ack" not in page and "部分封条未确认" not in page and "经法官决定" not in page
        assert "封条失联" not in page and "waiting_for_seal" not in page and "不待封条应答" not in page
        assert "法院处理中" in page


def next_line(page: str) -> str:
    [sentence] = re.findall(r'<p class="next">(.*?)</p>', page, re.S)[:1]
    return sentence.strip()


def test_the_portal_and_the_inbox_say_so_when_the_seal_is_armed_after_its_ack(portal: Portal) -> None:
    """The request was ``disarmed`` (the debtor told an officer will come); the seal's signed heartbeat then says it
    is armed: the debtor's page says the request went back and no officer comes for now — until a new disarm is
    acknowledged, which makes it ``disarmed`` again — and their inbox has the message, naming no seal."""
    words = catalogue()
    pending = words["case_removal_state.disarm_pending"]["zh"]  # the state it names, as the page shows it
    back = words["portal.next_armed_again"]["zh"].format(state=pending)
    coming = words["portal.next_disarmed_for_debtor"]["zh"]
    request_id = portal.file()
    commands = portal.approve(request_id)
    portal.acknowledge(commands[SEAL])
    with portal.code_client() as client:
        assert next_line(client.get(f"/portal/cases/{q(CASE)}").text) == coming
    seal = portal.world.seal
    portal.world.ingest((seal.event_topic, seal.event(EventType.HEARTBEAT, {"armed": True, "uptime_s": 5})))
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text  # read: settled first
        assert 'data-state="disarm_pending"' in page and next_line(page) == back and coming not in page
        assert f'data-device="{SEAL}" data-status="pending"' in page  # no seal's armed state while it is open
        inbox = client.get("/inbox").text
        assert "签名消息" in inbox and "等待封条解除布防" in inbox and SEAL not in inbox
    assert portal.state(request_id) == "disarm_pending"
    with portal.world.client("creditor") as client:  # true for whoever reads it
        assert next_line(client.get(f"/creditor/cases/{q(CASE)}").text) == back

    with session_scope(portal.world.session_factory) as session:  # the judge re-sends the disarm
        request = get_request(session, request_id=request_id, for_update=True)
        judge = get_user(session, username="judge")
        key, ttl = generate_signing_key(), timedelta(minutes=10)
        [row] = resend_disarm(
            session, actor=judge, request=request, device_id=None, note="", key=key, ttl=ttl, now=utc_now()
        )
        session.flush()
        command_id = row.id
    with portal.code_client() as client:  # still waiting for the new disarm's acknowledgement
        assert next_line(client.get(f"/portal/cases/{q(CASE)}").text) == back
    portal.acknowledge(command_id)
    with portal.code_client() as client:
        page = client.get(f"/portal/cases/{q(CASE)}").text
        assert 'data-state="disarmed"' in page and next_line(page) == coming
