"""The creditor's time for written views against the judge's decision: the creditor is told that a view is taken
before the judge decides and no later than ``views_due_at``; on a ground resting on the creditor's consent or act
(security given with the applicant's consent, the applicant withdrew, a settlement) the judge may not approve before
that time with no view on record unless stating why it is decided early — kept in the history and the audit."""

from __future__ import annotations

from sqlalchemy import select

from server.audit.models import AuditEntry
from tests.server.removal_world import RemovalWorld
from tests.server.test_removal_api import world as removal_world

world = removal_world  # the removal API's world: case A with two seals, a user of every role

EARLY = "申请执行人已于本日到庭书面确认同意解除查封，笔录附卷。"


def messages(world: RemovalWorld, who: str) -> list[dict[str, str]]:
    response = world.client.get("/api/me/inbox", headers=world.as_(who))
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))


def approve_entry(world: RemovalWorld) -> dict[str, object]:
    with world.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "removal.approve")).one()
        return dict(entry.details)


def test_a_ground_resting_on_the_creditors_consent_is_not_approved_before_their_time_with_no_view(
    world: RemovalWorld,
) -> None:
    request_id = world.filed(ground="security_given")
    [filed] = [m for m in messages(world, "creditor") if m["kind"] == "removal.filed"]
    assert "申请执行人可在法官作出决定前、且不晚于 " in filed["text_zh"], filed
    assert "before the judge decides and no later than " in filed["text_en"], filed
    world.ok("judge", request_id, "review", {"note": "受理"})
    refused = world.act("judge", request_id, "approve", {"reasons": "担保充分，准予解除。"})
    assert refused.status_code == 409, refused.text
    assert "申请执行人提出书面意见的期限至" in refused.json()["detail"]
    assert "(early_reasons)" in refused.json()["detail"]  # then its English message, naming the field
    assert world.read(request_id, "judge")["state"] == "under_review"  # nothing was sent to any seal
    # The creditor's view is still taken, and with it on record the judge decides.
    assert world.act("creditor", request_id, "views", {"text": "担保已提供，同意解除查封。"}).status_code == 201
    approved = world.ok("judge", request_id, "approve", {"reasons": "担保充分，申请执行人同意，准予解除。"})
    assert approved["state"] == "disarm_pending"
    details = approve_entry(world)
    assert (details["views"], details["before_views_due"]) == (1, True) and "early_reasons" not in details


def test_the_judge_decides_early_only_saying_why_and_the_reason_is_kept(world: RemovalWorld) -> None:
    request_id = world.filed(ground="applicant_withdrew")
    world.ok("judge", request_id, "review", {"note": "受理"})
    blank = world.act("judge", request_id, "approve", {"reasons": "申请执行人撤回申请。", "early_reasons": "  "})
    assert blank.status_code == 409, blank.text
    body = {"reasons": "申请执行人撤回申请。", "early_reasons": EARLY}
    approved = world.ok("judge", request_id, "approve", body)
    assert approved["state"] == "disarm_pending"
    [step] = [s for s in approved["history"] if s["action"] == "approve"]
    assert step["note"].startswith("申请执行人撤回申请。") and EARLY in step["note"]
    assert "提前决定的理由" in step["note"]
    assert approved["decision_reasons"] == step["note"]  # the request's record, exported in removal.jsonl
    details = approve_entry(world)
    assert (details["early_reasons"], details["views"], details["before_views_due"]) == (EARLY, 0, True)
    # The creditor is told why their time was cut short.
    [told] = [m for m in messages(world, "creditor") if m["kind"] == "removal.approved"]
    assert EARLY in told["text_zh"] and EARLY in told["text_en"]


def test_a_ground_the_creditor_does_not_give_may_be_approved_at_once(world: RemovalWorld) -> None:
    request_id = world.filed(ground="paid_in_full")
    approved = world.approved(request_id)  # proof of payment: the court's own finding, the creditor heard or not
    assert approved["state"] == "disarm_pending"
    details = approve_entry(world)
    assert (details["views"], details["before_views_due"]) == (0, True) and "early_reasons" not in details
