"""A proof file is never downloaded under an extension its uploader chose.

Windows drops trailing dots and spaces from a name it saves: "回单.hta." is saved as 回单.hta, which runs as a
program. Such a name's extension is read as Windows reads it, and one that is none of a proof's types is refused;
and every download is named by the server: the uploaded name's stem and the extension of the type the content is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.removal.errors import ProofRefused
from server.removal.grounds import RemovalGround
from server.removal.proofs import JPEG, PDF, PNG, ProofStore, check_proof, download_name
from server.removal.service import file_request
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, build_pdf, make_world, pdf_bytes, picture_bytes, proof

#: A valid PDF whose first comment line is an HTML application: opened as .hta or .html, it runs.
POLYGLOT = build_pdf(
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [] /Count 0 >>",
    header=b"%PDF-1.4\n%<html><script>alert(document.location)</script></html>",
)
HIDDEN = ["回单.hta.", "回单.html. . .", "回单.exe ", "回单.hta\u3000", "回单.HTA..", "回单.svg"]


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def saved_as(response: httpx.Response) -> str:
    """The name a browser saves the download under (from its Content-Disposition)."""
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; "), disposition
    value = disposition.split("; ", 1)[1]
    if value.startswith("filename*=utf-8''"):
        return unquote(value.removeprefix("filename*=utf-8''"))
    return value.removeprefix('filename="').removesuffix('"')


@pytest.mark.parametrize("name", HIDDEN)
def test_an_extension_is_read_as_windows_saves_the_name_and_one_of_no_proof_type_is_refused(name: str) -> None:
    with pytest.raises(ProofRefused) as refused:
        check_proof(POLYGLOT, filename=name, declared_type="application/pdf", max_bytes=2**20)
    message = str(refused.value)
    assert message.index("不接收扩展名为") < message.index("are not accepted, only PDF, JPEG or PNG")
    assert refused.value.said is not None and refused.value.said.key == "refusal.proof_extension"


def test_trailing_dots_and_spaces_of_a_good_name_are_no_refusal() -> None:
    assert check_proof(pdf_bytes(), filename="回单.pdf. ", declared_type="", max_bytes=2**20).media_type == PDF


@pytest.mark.parametrize(
    ("uploaded", "media_type", "served"),
    [
        ("回单.pdf", PDF, "回单.pdf"),
        ("回单.PDF", PDF, "回单.pdf"),
        ("回单.hta.", PDF, "回单.pdf"),  # a name filed before such names were refused
        ("回单.html. . .", PDF, "回单.pdf"),
        ("回单.exe ", PDF, "回单.pdf"),
        ("C:\\Users\\x\\银行 回单.2023.pdf", PDF, "银行 回单.2023.pdf"),
        ("photo.jpeg", JPEG, "photo.jpg"),
        ("IMG_0001.JPG", JPEG, "IMG_0001.jpg"),
        ("scan", PNG, "scan.png"),
        ("", PNG, "unnamed.png"),
        ("...", PDF, "proof.pdf"),
    ],
)
def test_a_download_is_named_by_the_server_after_the_type_of_its_content(
    uploaded: str, media_type: str, served: str
) -> None:
    assert download_name(uploaded, media_type) == served


@pytest.mark.parametrize("name", HIDDEN[:3])
def test_an_upload_with_a_hidden_extension_is_refused_in_both_languages(world: RemovalWorld, name: str) -> None:
    response = world.file(files=[proof(name, POLYGLOT, "application/pdf")])
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.index("不接收扩展名为") < detail.index("are not accepted"), detail


def test_a_proof_filed_under_a_hostile_name_is_downloaded_under_its_type(world: RemovalWorld, tmp_path: Path) -> None:
    """A proof filed under "回单.hta." before such names were refused, and a good one: each downloads as a .pdf or
    .jpg named after its stem, by the court's staff and by the parties, from the API the pages link to."""
    checked = check_proof(POLYGLOT, filename="回单.pdf", declared_type="", max_bytes=2**20)
    hostile = replace(checked, filename="回单.hta.")
    photo = check_proof(picture_bytes("JPEG"), filename="照片.jpeg", declared_type="", max_bytes=2**20)
    with session_scope(world.session_factory) as session:
        request = file_request(
            session,
            actor=get_user(session, username="debtor"),
            case_no=CASE_A,
            ground=RemovalGround.PAID_IN_FULL,
            statement="已清偿",
            proofs=[hostile, photo],
            store=ProofStore(tmp_path / "removal-proofs"),
            settings=RemovalSettings(),
            now=utc_now(),
        )
        request_id = request.id
    shown = world.read(request_id)
    assert [p["filename"] for p in shown["proofs"]] == ["回单.hta.", "照片.jpeg"]  # shown as uploaded
    for who in ("judge", "debtor", "creditor"):
        names = []
        for item in shown["proofs"]:
            response = world.client.get(item["url"], headers=world.as_(who))
            assert response.status_code == 200, response.text
            names.append(saved_as(response))
        assert names == ["回单.pdf", "照片.jpg"], who


def test_a_good_upload_downloads_under_its_own_name(world: RemovalWorld) -> None:
    shown = world.file(files=[proof("回单.pdf.", pdf_bytes(), "application/pdf")]).json()
    assert shown["proofs"][0]["filename"] == "回单.pdf."
    assert saved_as(world.client.get(shown["proofs"][0]["url"], headers=world.as_("judge"))) == "回单.pdf"
