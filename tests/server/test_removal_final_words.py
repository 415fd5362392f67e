"""What the parties read once a request is final, and the names of states they are told to look for: the lifting's
words hold when a seal was recorded missing; an aborted request's unanswered disarm reads withdrawn, and no final
request offers to send anything again; a state a message quotes is the one the pages show; the public notice page
does not say that the seal stands disarmed while the seizure is being lifted."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from server.core.base import utc_now
from server.notices.service import issue_notice
from server.removal.messages import MESSAGES
from server.removal.models import RemovalStep
from server.seals.cases import update_case, update_court
from server.words import catalogue
from tests.server.helpers import CASE_A, COURT_CODE, COURT_PHONE, notice_facts
from tests.server.removal_world import RemovalWorld, c
from tests.server.test_removal_api import world as removal_world

world = removal_world  # the removal API's world: case A with two seals, a user of every role


def last_message(world: RemovalWorld, who: str) -> dict[str, str]:
    response = world.client.get("/api/me/inbox", headers=world.as_(who))
    assert response.status_code == 200, response.text
    latest: dict[str, str] = response.json()[0]
    return latest


def test_the_lifting_is_told_in_words_true_when_a_seal_was_missing(world: RemovalWorld) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.expire(commands["seal-a2"].id)
    world.ok("judge", request_id, "lift-without-ack", {"device_ids": ["seal-a2"], "reasons": "封条被盗"})
    lifted = world.ok("officer", request_id, "lifted", {"note": "现场仅见一枚", "found": {"seal-a2": "missing"}})
    assert lifted["state"] == "lifted"
    for who in ("debtor", "creditor", "judge"):
        told = last_message(world, who)
        assert told["kind"] == "removal.lifted"
        assert "执行人员已到场确认，查封已解除" in told["text_zh"], told
        assert "an officer confirmed on site; the seizure is lifted" in told["text_en"], told
        assert "拆除" not in told["text_zh"] and "removed" not in told["text_en"], told
    page = world.client.get(f"/portal/cases/{c(CASE_A)}", headers=world.as_("debtor"))
    assert page.status_code == 200 and "执行人员已到场确认，查封已解除。" in page.text
    assert "封条已拆除" not in page.text


def test_an_aborted_requests_unanswered_disarm_reads_withdrawn_and_nothing_offers_a_resend(
    world: RemovalWorld,
) -> None:
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a2", commands["seal-a2"].id, ack=False)  # a2 refused its disarm; a1's is still valid
    aborted = world.ok("judge", request_id, "abort", {"reasons": "发现新的财产线索"})
    assert aborted["state"] == "aborted"
    seals = {s["device_id"]: s for s in aborted["seals"]}
    a1, a2 = seals["seal-a1"], seals["seal-a2"]
    assert (a1["status"], a1["command_state"], a1["status_zh"]) == ("withdrawn", "withdrawn", "已撤回（准予已撤销）")
    assert (a2["status"], a2["status_zh"]) == ("refused", "封条拒绝了指令")  # no "(可重新发送)": it is final
    assert all("重新发送" not in s["status_zh"] for s in aborted["seals"])
    assert world.read(request_id, "debtor")["seals"][0]["status"] == "pending"  # the debtor: as before, no seal's word
    page = world.client.get(f"/cases/{c(CASE_A)}", headers=world.as_("judge"))
    card = page.text.split(f'id="removal-{request_id}"')[1].split("</article>")[0]
    assert 'data-device="seal-a1" data-progress="withdrawn"' in card and "已撤回（准予已撤销）" in card
    assert 'data-device="seal-a2" data-progress="refused"' in card
    assert "可重新发送" not in card and "封条拒绝了指令" in card
    # the case page's commands table: a1's disarm, marked expired by the abort before its expiry, is the court's
    # withdrawal, not "no answer in time"
    row = page.text.split(f'id="command-{commands["seal-a1"].id}"')[1].split("</tr>")[0]
    assert 'data-shown-state="withdrawn_by_court"' in row and "法院已撤回（未到期即停止发送）" in row
    assert "超时未应答" not in row and "前未收到封条应答" not in row and "法院于" in row
    # A record stored before withdrawals were recorded so (a1 "waiting_for_seal", its disarm expired before its
    # expiry) reads withdrawn all the same.
    with world.session_factory() as session:
        step = session.scalars(select(RemovalStep).where(RemovalStep.action == "abort")).one()
        old = [
            {**s, "status": "waiting_for_seal", "command_state": "expired"} if s["device_id"] == "seal-a1" else s
            for s in step.seals or []
        ]
        session.execute(update(RemovalStep).where(RemovalStep.id == step.id).values(seals=old))
        session.commit()
    again = {s["device_id"]: s for s in world.read(request_id, "judge")["seals"]}
    assert (again["seal-a1"]["status"], again["seal-a2"]["status"]) == ("withdrawn", "refused")


def test_every_state_a_message_quotes_is_the_state_the_pages_show(world: RemovalWorld) -> None:
    pending = catalogue()["case_removal_state.disarm_pending"]
    for kind in ("armed_again", "armed_again_for_debtor"):
        _, zh, en = MESSAGES[kind]
        assert "“{pending}”" in zh and "“{pending}”" in en, kind
    back = catalogue()["portal.next_armed_again"]
    assert "“{state}”" in back["zh"] and "“{state}”" in back["en"]
    request_id = world.filed()
    world.approved(request_id)
    shown = world.read(request_id, "debtor")
    assert shown["state_zh"] == pending["zh"]
    page = world.client.get(f"/portal/cases/{c(CASE_A)}", headers=world.as_("debtor"))
    assert f">{pending['zh']}<" in page.text  # the state the armed-again message names is on the debtor's page
    # A refusal names the state by the same words.
    refused = world.act("creditor", request_id, "views", {"text": "不同意"})
    assert refused.status_code == 409 and f"“{pending['zh']}”" in refused.json()["detail"]


def test_the_public_notice_page_does_not_tell_that_the_seal_is_disarmed_while_the_seizure_is_lifted(
    world: RemovalWorld,
) -> None:
    context = world.client.app.state.context  # type: ignore[attr-defined]
    with world.session_factory() as session:
        update_court(session, actor=None, code=COURT_CODE, changes={"phone": COURT_PHONE})
        update_case(session, actor=None, case_no=CASE_A, changes=notice_facts(CASE_A))
        issued = issue_notice(
            session,
            actor=None,
            device_id="seal-a1",
            key=context.notice_key.get(),
            default_validity=timedelta(days=365),
            now=utc_now(),
        )
        session.commit()
    world.heard("seal-a1", armed=True)
    sealed = world.client.get(f"/notice/{issued.token}").text
    assert "本公告经法院签名核验" in sealed and "通知书" not in sealed
    assert "布防中（监控中）" in sealed
    request_id = world.filed()
    commands = world.commands(world.approved(request_id))
    world.answer("seal-a1", commands["seal-a1"].id)
    world.heard("seal-a1", armed=False)
    verdict = world.client.get("/api/notices/verify", params={"token": issued.token}).json()
    assert verdict["case_status"] == "lifting"
    assert (verdict["seal"]["armed"], verdict["seal"]["armed_hidden"]) == (None, True)
    page = world.client.get(f"/notice/{issued.token}").text
    assert "已撤防" not in page and "disarmed" not in page
    assert "法院解除查封办理期间，不公开显示封条的布防状态" in page
    # The court's own pages still show it.
    seal_page = world.client.get("/api/seals/seal-a1", headers=world.as_("judge")).json()
    assert seal_page["armed"] is False
    # Once the approval is withdrawn the case is sealed again, and the state is shown again.
    world.ok("judge", request_id, "abort", {"reasons": "发现新的财产线索"})
    verdict = world.client.get("/api/notices/verify", params={"token": issued.token}).json()
    assert (verdict["case_status"], verdict["seal"]["armed_hidden"]) == ("sealed", False)
    assert verdict["seal"]["armed"] is False
