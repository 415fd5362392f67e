"""Proof files are told by their content: a wrong type, a lying name or declared type, a file that only starts like
a picture or a PDF, one too large, one too many — each refused with the reason, nothing filed; good ones are stored
once by their SHA-256."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.config import RemovalSettings
from server.core.db import SessionFactory
from server.removal.errors import ProofRefused
from server.removal.models import RemovalRequest
from server.removal.proofs import JPEG, PDF, PNG, ProofStore, check_proof, safe_filename
from tests.server.auth_helpers import make_settings
from tests.server.removal_world import RemovalWorld, make_world, pdf_bytes, picture_bytes, proof

MAX = 64 * 1024


def checked(data: bytes, name: str, declared: str = "") -> str:
    return check_proof(data, filename=name, declared_type=declared, max_bytes=MAX).media_type


def refusal(data: bytes, name: str, declared: str = "") -> str:
    with pytest.raises(ProofRefused) as refused:
        check_proof(data, filename=name, declared_type=declared, max_bytes=MAX)
    return str(refused.value)


def test_good_files_by_their_content() -> None:
    assert checked(pdf_bytes(), "回单.PDF", "application/pdf") == PDF
    assert checked(picture_bytes("JPEG"), "photo.jpeg", "image/jpeg") == JPEG
    assert checked(picture_bytes("JPEG"), "photo.jpg", "application/octet-stream") == JPEG  # undeclared is no lie
    assert checked(picture_bytes("PNG"), "scan", "") == PNG  # no extension is no lie either


@pytest.mark.parametrize(
    ("data", "name", "declared", "reason"),
    [
        (b"hello, this is text\n", "note.txt", "text/plain", "not a PDF, JPEG or PNG"),
        (b"GIF89a" + bytes(40), "pic.gif", "image/gif", "not a PDF, JPEG or PNG"),
        (b"<html><script>alert(1)</script>", "receipt.pdf", "application/pdf", "not a PDF, JPEG or PNG"),
        (b"", "empty.pdf", "application/pdf", "empty"),
        (picture_bytes("PNG"), "receipt.pdf", "application/pdf", "the name says .pdf, the content is image/png"),
        (pdf_bytes(), "receipt.pdf", "image/png", "declared as image/png, the content is application/pdf"),
        (picture_bytes("JPEG"), "photo.png", "", "the name says .png"),
        (picture_bytes("JPEG")[:200], "photo.jpg", "image/jpeg", "does not decode"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "scan.png", "image/png", "does not decode"),
        (pdf_bytes().replace(b"%%EOF", b"%%END"), "r.pdf", "application/pdf", "must end with %%EOF"),
        (b"%PDF-1.4\n" + bytes(50) + b"\n%%EOF\n", "r.pdf", "application/pdf", "no startxref"),
        (b"%PDF-1.4\nstartxref\n99999\n%%EOF\n", "r.pdf", "application/pdf", "points past its end"),
        (pdf_bytes() + bytes(MAX), "big.pdf", "application/pdf", f"a proof file has at most {MAX}"),
    ],
)
def test_refused(data: bytes, name: str, declared: str, reason: str) -> None:
    assert reason in refusal(data, name, declared)


def test_uploaded_names_are_shown_not_trusted() -> None:
    assert safe_filename("C:\\Users\\x\\..\\回单.pdf") == "回单.pdf"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("a\x00b\x1b[2J.pdf") == "ab[2J.pdf"
    assert safe_filename("") == "unnamed"


def test_the_store_is_content_addressed(tmp_path: Path) -> None:
    store = ProofStore(tmp_path)
    good = check_proof(pdf_bytes(), filename="a.pdf", declared_type="", max_bytes=MAX)
    path = store.put_proof(good)
    assert path == tmp_path / f"{hashlib.sha256(pdf_bytes()).hexdigest()}.pdf" and path.read_bytes() == pdf_bytes()
    assert store.put_proof(good) == path and [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    settings = make_settings(database_url, tmp_path).model_copy(
        update={"removal": RemovalSettings(proof_max_bytes=MAX, proof_max_files=2)}
    )
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def requests_filed(world: RemovalWorld) -> int:
    with world.session_factory() as session:
        return int(session.scalar(select(func.count(RemovalRequest.id))) or 0)


@pytest.mark.parametrize(
    ("files", "status", "reason"),
    [
        ([proof("receipt.pdf", picture_bytes("PNG"), "application/pdf")], 422, "the name says .pdf"),
        ([proof("receipt.txt", b"I paid, trust me", "text/plain")], 422, "not a PDF, JPEG or PNG"),
        ([proof("receipt.png", pdf_bytes(), "image/png")], 422, "the name says .png"),
        ([proof("big.png", picture_bytes("PNG", (900, 900), 0) + bytes(MAX), "image/png")], 422, "at most"),
        ([proof(f"r{i}.pdf", pdf_bytes(str(i)), "application/pdf") for i in range(3)], 422, "at most 2"),
    ],
)
def test_refused_uploads_file_nothing(world: RemovalWorld, files: list, status: int, reason: str) -> None:  # type: ignore[type-arg]
    response = world.file(files=files)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert requests_filed(world) == 0


def test_a_body_larger_than_every_file_together_is_cut_off(world: RemovalWorld) -> None:
    huge = [proof("huge.pdf", b"%PDF-1.4\n" + bytes(3 * MAX + 300 * 1024), "application/pdf")]
    response = world.file(files=huge)
    assert response.status_code == 413
    assert requests_filed(world) == 0


def test_good_uploads_are_stored_once(world: RemovalWorld, tmp_path: Path) -> None:
    same = pdf_bytes("same")
    files = [proof("a.pdf", same, "application/pdf"), proof("b.pdf", same, "application/pdf")]
    shown = world.file(files=files).json()
    assert [(p["filename"], p["size"]) for p in shown["proofs"]] == [("a.pdf", len(same))]
    stored = tmp_path / "removal-proofs" / f"{hashlib.sha256(same).hexdigest()}.pdf"
    assert stored.read_bytes() == same
    photo = world.file("debtor-b", "(2022)苏0214执55号", files=[proof("IMG.JPG", picture_bytes("JPEG"), "image/jpeg")])
    assert photo.json()["proofs"][0]["media_type"] == "image/jpeg"
    no_files = world.client.post(
        "/api/cases/%282022%29%E8%8B%8F0214%E6%89%A755%E5%8F%B7/removal-requests",
        data={"ground": "nonsense", "statement": "x"},
        headers=world.as_("debtor-b"),
    )
    assert no_files.status_code == 422
