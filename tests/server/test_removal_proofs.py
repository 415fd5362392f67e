"""Proof files are told by their content: a wrong type, a lying name or declared type, a file that only starts like
a picture or a PDF, one too large, one too many — each refused with the reason, nothing filed; good ones are stored
once by their SHA-256."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageFile
from sqlalchemy import func, select

from server.app import create_app
from server.config import RemovalSettings
from server.core.blobs import Blob, ObjectBackend
from server.core.db import SessionFactory
from server.removal.errors import ProofRefused
from server.removal.models import RemovalRequest
from server.removal.proofs import JPEG, MAX_PIXELS, PDF, PNG, ProofStore, check_proof, safe_filename
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
        (picture_bytes("JPEG")[:200], "photo.jpg", "image/jpeg", "picture cannot be opened"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "scan.png", "image/png", "picture cannot be opened"),
        (pdf_bytes().replace(b"%%EOF", b"%%END"), "r.pdf", "application/pdf", "must end with %%EOF"),
        (b"%PDF-1.4\n" + bytes(50) + b"\n%%EOF\n", "r.pdf", "application/pdf", "no startxref"),
        (b"%PDF-1.4\nstartxref\n99999\n%%EOF\n", "r.pdf", "application/pdf", "does not point before itself"),
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
    store.put_proof(good)
    path = tmp_path / f"{hashlib.sha256(pdf_bytes()).hexdigest()}.pdf"
    assert path.read_bytes() == pdf_bytes() == store.read_proof(good.sha256, good.media_type)
    store.put_proof(good)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


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


@pytest.mark.parametrize(
    ("name", "data", "media_type", "kind"),
    [
        ("回单.png", b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\xff" * 40, "image/png", "PNG"),
        ("a.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 50, "image/jpeg", "JPEG"),
        ("photo.jpg", picture_bytes("JPEG")[:200], "image/jpeg", "JPEG"),
    ],
)
def test_a_broken_picture_is_refused_in_fixed_words_and_the_decoder_s_go_to_the_log(
    world: RemovalWorld, caplog: pytest.LogCaptureFixture, name: str, data: bytes, media_type: str, kind: str
) -> None:
    """The decoder's own words (``cannot identify image file <_io.BytesIO object at 0x…>``) are for the log; the
    debtor is told, in Chinese and English, that the picture cannot be opened and what to do."""
    with caplog.at_level(logging.INFO, logger="server.removal.proofs"):
        response = world.file(files=[proof(name, data, media_type)])
    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": f"{name}: 图片无法打开（可能已损坏），请重新拍摄或导出后上传 / the {kind} picture cannot be "
        "opened (it may be damaged): take or export it again and send it"
    }
    assert [r for r in caplog.records if name in r.getMessage() and "does not decode" in r.getMessage()]
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


class CountedObjects:
    """The proof store's real backend, counting the objects written to it and read from it."""

    def __init__(self, backend: ObjectBackend) -> None:
        self.backend = backend
        self.description = backend.description
        self.puts: Counter[str] = Counter()
        self.opens: Counter[str] = Counter()

    def put_once(self, name: str, data: bytes) -> bool:
        self.puts[name] += 1
        return self.backend.put_once(name, data)

    def open(self, name: str) -> Blob | None:
        self.opens[name] += 1
        return self.backend.open(name)

    def remove(self, name: str) -> None:
        self.backend.remove(name)

    def size(self, name: str) -> int | None:
        return self.backend.size(name)

    def check(self) -> None:
        self.backend.check()


def test_a_filing_writes_each_proof_once(world: RemovalWorld) -> None:
    """Stored once, in the filing's transaction after its checks, and never read back (a file already there would
    be, and hashed)."""
    store: ProofStore = cast(FastAPI, world.client.app).state.context.stores.proofs
    counted = CountedObjects(store.backend)
    store.backend = counted
    receipt, photo = pdf_bytes("once"), picture_bytes("PNG")
    files = [proof("a.pdf", receipt, "application/pdf"), proof("b.png", photo, "image/png")]
    assert world.file(files=files).status_code == 201
    names = [f"{hashlib.sha256(receipt).hexdigest()}.pdf", f"{hashlib.sha256(photo).hexdigest()}.png"]
    assert counted.puts == dict.fromkeys(names, 1)
    assert not counted.opens


def xref_stream_pdf() -> bytes:
    """A small PDF whose cross-reference is a stream (PDF 1.5+, as object-stream writers produce), uncompressed."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref_at = out.tell()
    rows = [bytes([0, 0, 0, 255])] + [bytes([1]) + o.to_bytes(2, "big") + bytes([0]) for o in [*offsets, xref_at]]
    table = b"".join(rows)
    out.write(b"4 0 obj\n<< /Type /XRef /Size 5 /W [1 2 1] /Root 1 0 R /Length %d >>\nstream\n" % len(table))
    out.write(table + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at)
    return out.getvalue()


def reportlab_pdf() -> bytes:
    from reportlab.pdfgen.canvas import Canvas

    out = io.BytesIO()
    canvas = Canvas(out)
    canvas.drawString(72, 720, "Bank receipt: paid in full")
    canvas.save()
    return out.getvalue()


def test_a_pdf_has_a_cross_reference_where_startxref_points() -> None:
    """Bytes between a PDF header and a ``startxref`` are no PDF (an HTML page would be served back as one): at the
    offset there must be a cross-reference table with its trailer, or a cross-reference stream, naming the root."""
    html = b"%PDF-1.4\n<html><body><script>alert(document.cookie)</script></body></html>\nstartxref\n0\n%%EOF\n"
    assert "startxref does not point at a cross-reference table or stream" in refusal(html, "receipt.pdf", PDF)
    good = pdf_bytes()
    no_trailer = good.replace(b"trailer", b"trailed")
    assert "has no trailer" in refusal(no_trailer, "r.pdf")
    no_root = good.replace(b"/Root 1 0 R", b"/Info 1 0 R")
    assert "no document root" in refusal(no_root, "r.pdf")
    not_xref_stream = xref_stream_pdf().replace(b"/Type /XRef", b"/Type /Page")
    assert "no cross-reference stream" in refusal(not_xref_stream, "r.pdf")
    assert checked(xref_stream_pdf(), "scan.pdf", PDF) == PDF
    assert checked(reportlab_pdf(), "receipt.pdf", PDF) == PDF


def test_what_clients_call_a_jpeg_is_a_jpeg() -> None:
    photo = picture_bytes("JPEG")
    for name, declared in [("IMG.jfif", "image/jpeg"), ("a.jpe", "image/pjpeg"), ("b.jpg", "image/jpg")]:
        assert checked(photo, name, declared) == JPEG
    assert checked(picture_bytes("PNG"), "scan.png", "image/x-png") == PNG


def decoded_pictures(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes of the pictures Pillow decodes from now on (in any thread), in order."""
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def counted(self: ImageFile.ImageFile) -> object:
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counted)
    return sizes


def test_a_picture_larger_than_a_document_is_refused_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Larger than :data:`MAX_PIXELS` is refused from its header; a 50-megapixel PNG of a few kilobytes is not
    decoded at all."""
    out = io.BytesIO()
    Image.new("1", (7100, 7100)).save(out, "PNG")
    decoded = decoded_pictures(monkeypatch)
    assert f"larger than {MAX_PIXELS} pixels" in refusal(out.getvalue(), "bomb.png", PNG)
    assert decoded == []
    assert checked(picture_bytes("PNG"), "scan.png", PNG) == PNG and len(decoded) == 1  # what decoding looks like


def test_two_writers_of_the_same_file_at_once_both_succeed(tmp_path: Path) -> None:
    """Each writer has its own temporary file: the same receipt filed twice at once (two threads) is stored, and
    neither writer fails nor leaves a temporary file behind."""
    data = os.urandom(4 * 1024 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    failures = []
    for attempt in range(5):
        store = ProofStore(tmp_path / f"proofs-{attempt}")
        barrier = threading.Barrier(2)

        def put(barrier: threading.Barrier = barrier, store: ProofStore = store) -> None:
            barrier.wait()
            try:
                store.put(sha, data, ".pdf")
            except OSError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=put) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        directory = tmp_path / f"proofs-{attempt}"
        assert [p.name for p in directory.iterdir()] == [f"{sha}.pdf"]
        assert (directory / f"{sha}.pdf").read_bytes() == data
    assert not failures, f"{len(failures)} of 5 concurrent pairs failed: {failures[0]!r}"


def test_a_refused_form_does_not_echo_a_file_part(world: RemovalWorld) -> None:
    """A form whose ``files`` part is no file is a 422 that says so without sending the part back."""
    secret = b"SECRET-CONTENT-" + b"x" * 100
    url = "/api/cases/%282021%29%E8%8B%8F0214%E6%89%A71234%E5%8F%B7/removal-requests"
    form = {"ground": "paid_in_full", "statement": "x"}
    as_text_part = world.client.post(url, data=form, files=[("files", (None, secret))], headers=world.as_("debtor"))
    as_field = world.client.post(url, data=form | {"files": secret.decode()}, headers=world.as_("debtor"))
    for response in (as_text_part, as_field):
        assert response.status_code == 422, response.text
        assert "files" in response.text and "SECRET-CONTENT" not in response.text


def test_a_blank_statement_is_refused(world: RemovalWorld) -> None:
    response = world.client.post(
        "/api/cases/%282021%29%E8%8B%8F0214%E6%89%A71234%E5%8F%B7/removal-requests",
        data={"ground": "paid_in_full", "statement": " \n\u3000"},
        headers=world.as_("debtor"),
    )
    assert response.status_code == 422 and "statement" in response.json()["detail"]
    assert requests_filed(world) == 0


@pytest.fixture
def roomy_world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    """Proof files as large as shipped (10 MiB), ten of them."""
    settings = make_settings(database_url, tmp_path).model_copy(update={"removal": RemovalSettings(proof_max_files=10)})
    with TestClient(create_app(settings, with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def big_photo() -> bytes:
    """A ~24-megapixel PNG (just under the limit) of a few hundred kilobytes: a tenth of a second to decode."""
    out = io.BytesIO()
    Image.new("RGB", (4900, 4900), (200, 200, 200)).save(out, "PNG", compress_level=1)
    return out.getvalue()


def write_lock_at_each_decode(monkeypatch: pytest.MonkeyPatch, database_url: str) -> list[bool]:
    """For each picture Pillow decodes from now on (in any thread): whether SQLite's write lock was held by someone
    at that moment (another connection's ``BEGIN IMMEDIATE``, not waiting, was refused)."""
    path = database_url.removeprefix("sqlite:///")
    held: list[bool] = []
    load = ImageFile.ImageFile.load

    def probed(self: ImageFile.ImageFile) -> object:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            held.append(False)
        except sqlite3.OperationalError:  # database is locked
            held.append(True)
        finally:
            other.close()
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", probed)
    return held


def test_pictures_are_decoded_with_no_write_lock_held(
    database_url: str, roomy_world: RemovalWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite has one write lock for the whole court (the ingest storing evidence, the dispatcher, every user): a
    filing checks what it can without reading a file, then decodes its pictures with no transaction open (and
    stores them in its own transaction, after its checks). A filing bound to fail (the case has an open request)
    fails before any picture is decoded."""
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's single write lock")
    world = roomy_world
    photos = [proof(f"p{i}.png", big_photo(), "image/png") for i in range(10)]

    def filing() -> int:
        return world.file(files=photos).status_code

    held = write_lock_at_each_decode(monkeypatch, database_url)
    assert filing() == 201
    assert len(held) >= len(photos) and not any(held), held  # each picture decoded, none under the write lock

    held.clear()
    assert filing() == 409  # the case has an open request now
    assert held == [], "a filing bound to fail decoded its pictures first"
