"""The portal attacked from outside, through the real app: stale or crafted forms, malformed bodies — each answered
as a page, in the order the API answers them (what fails without reading a proof file fails first)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.core.court_clock import court_clock
from server.removal.models import RemovalProof, RemovalRequest
from tests.server.removal_world import pdf_bytes, picture_bytes
from tests.web.conftest import CASE, PagesWorld, csrf_of
from tests.web.portal_world import Portal, make_portal, q
from tests.web.test_portal_pages import field_error, in_chinese


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def test_a_stale_form_is_refused_for_the_case_s_state_before_its_files_are_read(portal: Portal) -> None:
    with portal.code_client() as client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)  # the form, with no request open yet
        open_id = portal.file()  # filed meanwhile (another tab, the API)
        base = {"csrf_token": token, "ground": "paid_in_full", "statement": "已全部清偿。"}
        not_a_picture = ("files", ("回单.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"))
        stale = client.post(f"/portal/cases/{q(CASE)}/requests", data=base, files=[not_a_picture])
        assert stale.status_code == 409, stale.status_code
        assert "现在不能提交申请" in stale.text and f"第 {open_id} 号" in in_chinese(field_error(stale.text, "form"))
        assert 'aria-invalid="true"' not in stale.text  # the file was never looked at
    assert portal.state(open_id) == "submitted"


def test_a_body_that_cannot_be_read_as_the_form_is_answered_as_a_page(portal: Portal) -> None:
    with portal.code_client() as client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        base = {"csrf_token": token, "ground": "paid_in_full", "statement": "已全部清偿。"}
        long_name = ("files", ("回" * 2000 + ".pdf", pdf_bytes(), "application/pdf"))  # a part's header over 4 KB
        refused = client.post(f"/portal/cases/{q(CASE)}/requests", data=base, files=[long_name])
        assert refused.status_code == 400 and refused.headers["content-type"].startswith("text/html")
        assert "提交的表单无法读取" in refused.text and "multipart" not in refused.text
        fragment = client.post(
            f"/portal/cases/{q(CASE)}/requests", data=base, files=[long_name], headers={"HX-Request": "true"}
        )
        assert fragment.status_code == 400 and "<html" not in fragment.text and "提交的表单无法读取" in fragment.text
    with portal.world.client() as anonymous:
        broken = anonymous.post(
            "/portal/login",
            content=b'--B\r\nContent-Disposition: form-data; name="' + b"c" * 5000 + b'"\r\n\r\nx\r\n--B--\r\n',
            headers={"Content-Type": "multipart/form-data; boundary=B"},
        )
        assert broken.status_code == 400 and broken.headers["content-type"].startswith("text/html")
        assert "提交的表单无法读取" in broken.text


def test_a_link_cannot_tell_the_debtor_a_request_was_filed_that_was_not(portal: Portal) -> None:
    with portal.code_client() as client:
        for made_up in (999, portal.other_request):  # no such request; another case's
            page = client.get(f"/portal/cases/{q(CASE)}?filed={made_up}")
            assert page.status_code == 200 and "申请已提交" not in page.text and 'id="file-form"' in page.text
        mine = portal.file()
        assert f"申请已提交（第 {mine} 号）" in client.get(f"/portal/cases/{q(CASE)}?filed={mine}").text


def test_filing_and_withdrawing_again_and_again_is_capped_per_case_and_day(portal: Portal) -> None:
    """Each filing's proof files stay in the store for good: a debtor (or whoever holds the code) who files and
    withdraws in a loop would fill it. ``[removal] max_filings_per_day`` (5) ends the loop, for this case only."""
    url = f"/portal/cases/{q(CASE)}/requests"
    with portal.code_client() as client:
        for shade in range(5):
            token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
            base = {"csrf_token": token, "ground": "paid_in_full", "statement": "已全部清偿。"}
            photo = ("files", (f"{shade}.png", picture_bytes("PNG", shade=shade), "image/png"))
            filed = client.post(url, data=base, files=[photo])
            assert filed.status_code == 303, filed.text
            request_id = int(filed.headers["location"].split("filed=")[1].split("#")[0])
            withdrawn = client.post(f"/portal/requests/{request_id}/cancel", data={"csrf_token": token})
            assert withdrawn.status_code == 303 and portal.state(request_id) == "cancelled"
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        base = {"csrf_token": token, "ground": "paid_in_full", "statement": "已全部清偿。"}
        sixth = client.post(url, data=base, files=[("files", ("6.png", picture_bytes("PNG", shade=6), "image/png"))])
        assert sixth.status_code == 409 and "现在不能提交申请" in sixth.text
    with portal.world.session_factory() as session:
        first = session.scalar(select(func.min(RemovalRequest.filed_at)).where(RemovalRequest.case_no == CASE))
        assert first is not None
    said = in_chinese(field_error(sixth.text, "form"))
    assert "24 小时内已提交 5 份申请" in said and court_clock(first + timedelta(hours=24))[:16] in said  # court time
    with portal.world.session_factory() as session:
        stored = session.scalars(select(RemovalProof.sha256)).all()
        assert len(stored) == 5  # the sixth file was not stored
    api = portal.world.client("debtor")
    with api:
        refused = api.post(
            f"/api/cases/{q(CASE)}/removal-requests",
            data={"ground": "paid_in_full", "statement": "x"},
            headers={"X-Requested-With": "test"},
        )
        assert refused.status_code == 409 and "24 hours" in refused.json()["detail"]
    assert portal.state(portal.other_request) == "submitted"  # the other case is not counted with this one


def test_a_malformed_address_is_refused_in_the_page_s_words_not_the_validator_s(portal: Portal) -> None:
    """``?filed=abc`` (a link cut short, or typed by hand) gets the page's own words for the field, in the page's
    language — not pydantic's English ``query.filed: Input should be a valid integer…`` in a Chinese page."""
    with portal.code_client() as client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        chinese = client.get(f"/portal/cases/{q(CASE)}?filed=abc")
        assert chinese.status_code == 422
        assert "输入有误：“filed”的值无效" in chinese.text
        client.cookies.set("seal_lang", "en")
        english = client.get(f"/portal/cases/{q(CASE)}?filed=abc")
        assert english.status_code == 422 and "Invalid input: the value of “filed” is not valid" in english.text
        too_long = client.post(f"/portal/requests/{2**64}/cancel", data={"csrf_token": token})
        assert too_long.status_code == 422 and "the value of “request_id” is not valid" in too_long.text
        for page in (chinese, english, too_long):
            assert "Input should" not in page.text and "query." not in page.text and "path." not in page.text


def test_a_form_token_of_any_text_is_refused_as_forged_not_answered_with_a_crash(portal: Portal) -> None:
    """A non-ASCII ``csrf_token`` made ``hmac.compare_digest`` raise (found by a review): a 500, not a refusal."""
    with portal.code_client() as client:
        client.get(f"/portal/cases/{q(CASE)}")
        for forged in ["é" * 43, "令牌", "\u202e" + "a" * 42]:
            form = {"csrf_token": forged, "ground": "paid_in_full", "statement": "已全部清偿。"}
            refused = client.post(f"/portal/cases/{q(CASE)}/requests", data=form)
            assert refused.status_code == 403, (forged, refused.status_code)
