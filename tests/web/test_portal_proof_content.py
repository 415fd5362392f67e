"""The portal's side of what proof files carry (no browser): the form tells the debtor that the court keeps the files
as uploaded and the creditor sees photos without their location; a PDF with a script is refused beside its field in
the page's words; and a filing whose store fails half-way leaves no file of its own, as through the API."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from server.removal.models import RemovalProof, RemovalRequest
from server.removal.proofs import ProofStore
from tests.server.removal_world import pdf_bytes
from tests.server.test_removal_proof_content import with_catalog
from tests.server.test_removal_proof_leftovers import FailingObjects
from tests.web.conftest import CASE, PagesWorld, csrf_of
from tests.web.portal_world import Portal, make_portal, q
from tests.web.test_portal_pages import field_error, in_chinese


@pytest.fixture
def portal(world: PagesWorld) -> Portal:
    return make_portal(world)


def test_the_form_says_who_sees_what_of_the_files(portal: Portal) -> None:
    with portal.code_client() as client:
        chinese = client.get(f"/portal/cases/{q(CASE)}").text
        client.cookies.set("seal_lang", "en")
        english = client.get(f"/portal/cases/{q(CASE)}").text
    assert "法院保存您上传的原始文件；申请执行人看到的照片已去除拍摄位置" in chinese
    assert "The court keeps your files as uploaded; the creditor sees photos without their location" in english
    assert 'aria-describedby="files-limits files-privacy files-error"' in chinese
    for page in (chinese, english):  # the files' hidden error line is empty, not the word "None"
        assert ">None<" not in page and "None" not in page.split('id="files-error"', 1)[1].split("</p>", 1)[0]


def test_no_page_prints_a_missing_value_as_the_word_none() -> None:
    from server.web.templating import environment

    assert environment().from_string("<p>{{ value }}</p>").render(value=None) == "<p></p>"


def test_a_pdf_with_a_script_is_refused_beside_its_field(portal: Portal) -> None:
    script = with_catalog(b"/OpenAction << /S /J#61vaScript /JS (app.alert(1)) >>")
    with portal.code_client() as client:
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        form = {"csrf_token": token, "ground": "paid_in_full", "statement": "已全部清偿。"}
        refused = client.post(
            f"/portal/cases/{q(CASE)}/requests", data=form, files=[("files", ("回单.pdf", script, "application/pdf"))]
        )
    assert refused.status_code == 422
    assert "回单.pdf 含有脚本，为安全起见不予接收" in in_chinese(field_error(refused.text, "files"))


def test_a_portal_filing_whose_store_fails_half_way_leaves_no_file_of_its_own(portal: Portal) -> None:
    fresh, failing = pdf_bytes("fresh"), pdf_bytes("no room")
    files = [("files", ("a.pdf", fresh, "application/pdf")), ("files", ("b.pdf", failing, "application/pdf"))]
    with portal.code_client() as client:
        store: ProofStore = cast(FastAPI, portal.world.app).state.context.stores.proofs
        directory = cast(Path, store.backend.directory)  # type: ignore[attr-defined]
        store.backend = FailingObjects(store.backend, hashlib.sha256(failing).hexdigest())
        token = csrf_of(client.get(f"/portal/cases/{q(CASE)}").text)
        form = {"csrf_token": token, "ground": "paid_in_full", "statement": "已全部清偿。"}
        answer = client.post(f"/portal/cases/{q(CASE)}/requests", data=form, files=files)
    assert answer.status_code == 503, answer.text[:300]
    with portal.world.session_factory() as session:
        assert session.scalar(select(func.count(RemovalRequest.id)).where(RemovalRequest.case_no == CASE)) == 0
        held = set(session.scalars(select(RemovalProof.sha256)))
    left = {p.name.split(".")[0] for p in directory.iterdir()} if directory.exists() else set()
    assert left <= held and hashlib.sha256(fresh).hexdigest() not in left
