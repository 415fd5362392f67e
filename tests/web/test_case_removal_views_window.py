"""The case page's approval form while the creditor's time for written views runs: it warns on every ground; on a
ground resting on the creditor's consent or act with no view on record it asks why the judge decides early, and
refuses the approval without it, as the API does."""

from __future__ import annotations

from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import session_scope
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore
from server.removal.service import file_request
from tests.web.conftest import CASE, PagesWorld
from tests.web.test_case_pages import CASE_URL, HTMX, snapshot_dir
from tests.web.test_case_removal_decisions import card_of, state_of


def filed(world: PagesWorld, ground: RemovalGround) -> int:
    with session_scope(world.session_factory) as session:
        request = file_request(
            session,
            actor=get_user(session, username="debtor"),
            case_no=CASE,
            ground=ground,
            statement="已提供银行保函作为担保。",
            proofs=[],
            store=ProofStore(snapshot_dir(world).parent / "proofs"),
            settings=RemovalSettings(),
            now=utc_now(),
        )
        return request.id


def test_the_approval_form_warns_and_asks_why_the_judge_decides_before_the_creditors_time(
    world: PagesWorld,
) -> None:
    request_id = filed(world, RemovalGround.SECURITY_GIVEN)
    base = f"{CASE_URL}/removal/{request_id}"
    with world.client("judge") as client:
        assert client.post(f"{base}/review", data={"note": "受理"}, headers=HTMX).status_code == 200
        card = card_of(client.get(CASE_URL).text, request_id)
        assert 'data-views-window="open"' in card and "申请执行人提出书面意见的期限至" in card
        assert 'name="early_reasons"' in card and "提前决定的理由" in card
        client.cookies.set("seal_lang", "en")
        english = card_of(client.get(CASE_URL).text, request_id)
        assert "The creditor&#39;s time for a written view runs until" in english and "⟦" not in english
        client.cookies.set("seal_lang", "zh-CN")
        refused = client.post(f"{base}/approve", data={"reasons": "担保充分"}, headers=HTMX)
        assert refused.status_code == 409 and "或写明提前决定的理由" in refused.text
        assert state_of(world, request_id) == "under_review"
        early = "申请执行人到庭书面同意解除查封"
        data = {"reasons": "担保充分", "early_reasons": early}
        assert client.post(f"{base}/approve", data=data, headers=HTMX).status_code == 200
    assert state_of(world, request_id) == "disarm_pending"
    with world.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "removal.approve")).one()
        assert entry.details["early_reasons"] == early


def test_on_a_ground_the_court_finds_the_form_warns_but_asks_for_nothing_more(world: PagesWorld) -> None:
    request_id = filed(world, RemovalGround.PAID_IN_FULL)
    with world.client("judge") as client:
        review = client.post(f"{CASE_URL}/removal/{request_id}/review", data={"note": ""}, headers=HTMX)
        assert review.status_code == 200
        card = card_of(client.get(CASE_URL).text, request_id)
        assert 'data-views-window="open"' in card and 'name="early_reasons"' not in card
        answer = client.post(f"{CASE_URL}/removal/{request_id}/approve", data={"reasons": "已清偿"}, headers=HTMX)
        assert answer.status_code == 200
    assert state_of(world, request_id) == "disarm_pending"
