"""What a proof file carries besides the proof: a photo's metadata (where it was taken) is not handed to the parties
— the court reads the file as uploaded — and a PDF with active content (scripts, programs to launch, embedded
files, multimedia, XFA) is refused, however its names are spelt and wherever its objects are kept."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin
from reportlab.pdfgen import canvas
from sqlalchemy import select

from server.app import create_app
from server.audit.models import AuditEntry
from server.core.db import SessionFactory
from server.removal.errors import ProofRefused
from server.removal.proofs import check_proof
from tests.server.auth_helpers import make_settings
from tests.server.removal_world import RemovalWorld, build_pdf, make_world, pdf_bytes, proof

MAX = 10 * 1024 * 1024
GPS = 0x8825
XMP = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description exif:GPSLatitude='31,29.2N'/></x:xmpmeta>"


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body


def phone_photo(*, progressive: bool = False) -> bytes:
    """A JPEG as a phone writes one: EXIF with GPS and the orientation (portrait, turned), XMP with the position
    again, an IPTC block, a comment, and a second picture (MPF's preview) after the first one's end."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    exif[GPS] = {1: "N", 2: (31.0, 29.0, 12.0), 3: "E", 4: (120.0, 18.0, 30.0)}
    out = io.BytesIO()
    picture = Image.radial_gradient("L").convert("RGB").resize((96, 64))
    picture.save(out, "JPEG", exif=exif, progressive=progressive, quality=90, comment=b"Shot at home, Wuxi")
    data = out.getvalue()
    extra = segment(0xE1, XMP) + segment(0xED, b"Photoshop 3.0\x008BIM location")
    preview = io.BytesIO()
    Image.new("RGB", (8, 8)).save(preview, "JPEG", exif=exif)
    return data[:2] + extra + data[2:] + preview.getvalue()


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at 31.4869N 120.3083E")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>GPSLatitude 31,29.2N</x:xmpmeta>", zip=True)
    exif = Image.Exif()
    exif[GPS] = {1: "N", 2: (31.0, 29.0, 12.0)}
    out = io.BytesIO()
    Image.radial_gradient("L").convert("RGB").resize((40, 30)).save(out, "PNG", pnginfo=info, exif=exif)
    return out.getvalue()


def download(world: RemovalWorld, request_id: int, data: bytes, who: str) -> bytes:
    got = world.client.get(
        f"/api/removal-requests/{request_id}/proofs/{hashlib.sha256(data).hexdigest()}", headers=world.as_(who)
    )
    assert got.status_code == 200, got.text
    return got.content


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.tobytes()


@pytest.mark.parametrize("progressive", [False, True])
def test_the_parties_get_a_photo_without_its_metadata_and_the_court_gets_it_as_uploaded(
    world: RemovalWorld, progressive: bool
) -> None:
    photo = phone_photo(progressive=progressive)
    request_id = world.filed(files=[proof("IMG_0001.jpg", photo, "image/jpeg")])
    for who in ("judge", "clerk", "officer"):
        assert download(world, request_id, photo, who) == photo  # the evidence, its SHA-256 the record's
    for who in ("creditor", "debtor"):
        copy = download(world, request_id, photo, who)
        with Image.open(io.BytesIO(copy)) as picture:
            exif = picture.getexif()
            assert dict(exif) == {0x0112: 6}, dict(exif)  # the orientation alone: the portrait is not shown lying
            assert not exif.get_ifd(GPS)
            assert "comment" not in picture.info
            assert sorted(name for name, _ in picture.applist) == ["APP0", "APP1"]  # JFIF, the orientation alone
        for secret in (b"31,29.2N", b"PhoneMaker", b"Shot at home", b"8BIM", b"MPF"):
            assert secret not in copy, secret
        assert copy.count(b"\xff\xd8") == 1  # the second picture, with its own EXIF, is not sent
        assert pixels(copy) == pixels(photo[: photo.index(b"\xff\xd9") + 2])  # the same pixels: nothing re-encoded
        scans = photo[photo.index(b"\xff\xda") : photo.index(b"\xff\xd9")]
        assert scans in copy  # the compressed picture itself, byte for byte
    with world.session_factory() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "evidence.proof")).all()
        served = sorted((e.actor, e.details["served"]) for e in entries)
    assert served == sorted(
        [(who, "as_uploaded") for who in ("judge", "clerk", "officer")]
        + [(who, "without_metadata") for who in ("creditor", "debtor")]
    )


def test_the_parties_get_a_png_without_its_text_and_exif(world: RemovalWorld) -> None:
    picture = png_with_text()
    request_id = world.filed(files=[proof("scan.png", picture, "image/png")])
    assert download(world, request_id, picture, "judge") == picture
    copy = download(world, request_id, picture, "creditor")
    for chunk in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"31,29.2N", b"120.3083E"):
        assert chunk not in copy, chunk
    assert pixels(copy) == pixels(picture)


PAGES = (b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>")


def with_catalog(extra: bytes, *more: bytes) -> bytes:
    return build_pdf(b"<< /Type /Catalog /Pages 2 0 R " + extra + b" >>", *PAGES, *more)


def object_stream(*objects: bytes, compress: bool = True) -> bytes:
    """An object stream holding ``objects`` (numbered from 10), inflated or not."""
    body = b" ".join(objects)
    offsets, at = [], 0
    for number, obj in enumerate(objects, start=10):
        offsets.append(b"%d %d" % (number, at))
        at += len(obj) + 1
    head = b" ".join(offsets) + b" "
    data = head + body
    stored = zlib.compress(data) if compress else data
    flate = b"/Filter /FlateDecode " if compress else b""
    return b"<< /Type /ObjStm /N %d /First %d %s/Length %d >>\nstream\n%s\nendstream" % (
        len(objects),
        len(head),
        flate,
        len(stored),
        stored,
    )


def refused(data: bytes) -> str:
    with pytest.raises(ProofRefused) as refusal:
        check_proof(data, filename="回单.pdf", declared_type="application/pdf", max_bytes=MAX)
    return str(refusal.value)


def accepted(data: bytes) -> None:
    check_proof(data, filename="回单.pdf", declared_type="application/pdf", max_bytes=MAX)


ATTACHED = b"<< /Type /Filespec /F (a.exe) /EF << /F 5 0 R >> >>"


@pytest.mark.parametrize(
    ("pdf", "why"),
    [
        (with_catalog(b"/OpenAction 4 0 R", b"<< /S /JavaScript /JS (app.alert(1)) >>"), "JavaScript"),
        (with_catalog(b"/OpenAction << /S /Launch /F (cmd.exe) >>"), "an action launching a program"),
        (with_catalog(b"/Names << /EmbeddedFiles << /Names [(a.exe) 4 0 R] >> >>", ATTACHED), "an embedded file"),
        (with_catalog(b"/AcroForm << /XFA 4 0 R >>", b"<< /Length 0 >>\nstream\n\nendstream"), "an XFA form"),
        (with_catalog(b"", b"<< /Type /Annot /Subtype /RichMedia >>"), "rich media"),
        (with_catalog(b"/OpenAction << /S /J#61vaScript /J#53 (app.alert(1)) >>"), "JavaScript"),  # #xx escapes
        (with_catalog(b"/OpenAction << /S /#4c#61unch /F (x) >>"), "an action launching a program"),
        (with_catalog(b"", object_stream(b"<< /S /JavaScript /JS (app.alert(1)) >>")), "JavaScript"),
        (with_catalog(b"", object_stream(b"<< /Names [(a) 5 0 R] /Embedded#46iles 1 >>")), "an embedded file"),
        (with_catalog(b"", object_stream(b"<< /S /Launch >>", compress=False)), "an action launching a program"),
    ],
)
def test_a_pdf_with_active_content_is_refused_saying_why(pdf: bytes, why: str) -> None:
    said = refused(pdf)
    assert "此 PDF 含有" in said and f"the PDF contains {why}" in said, said
    assert said.index("此 PDF") < said.index("the PDF")  # Chinese first


def test_an_object_stream_that_cannot_be_checked_is_refused_quickly() -> None:
    bomb = zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)  # 64 MiB of zeros in 64 KiB
    for stream in (
        b"<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(bomb), bomb),
        b"<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode /Length 12 >>\nstream\nnot zlib at all\nendstream",
        b"<< /Type /Obj#53tm /N 1 /First 4 /Filter /LZWDecode /Length 3 >>\nstream\nabc\nendstream",
    ):
        started = time.monotonic()
        said = refused(with_catalog(b"", stream))
        assert "无法检查的压缩内容" in said and "cannot be checked" in said, said
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "pdf",
    [
        pdf_bytes(),
        with_catalog(b"/OpenAction [3 0 R /Fit] /PageMode /UseNone"),  # the first page's view: no active content
        with_catalog(b"", object_stream(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")),
        # a picture's compressed bytes may hold /JS by chance: inert outside a JavaScript action
        with_catalog(b"", b"<< /Subtype /Image /Length 9 >>\nstream\n\x93/JS \x01\x02\x03\nendstream"),
    ],
)
def test_a_pdf_without_active_content_is_accepted(pdf: bytes) -> None:
    accepted(pdf)


def test_a_reportlab_receipt_is_accepted_and_the_same_with_a_file_attached_is_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    page = canvas.Canvas(out, pageCompression=1)
    page.drawString(72, 720, "Bank receipt: 100,000.00 CNY paid")
    page.showPage()
    page.save()
    accepted(out.getvalue())
    pdfattach = shutil.which("pdfattach")
    if pdfattach is None:
        return
    (tmp_path / "r.pdf").write_bytes(out.getvalue())
    (tmp_path / "run.bat").write_bytes(b"@echo off\n")
    subprocess.run([pdfattach, tmp_path / "r.pdf", tmp_path / "run.bat", tmp_path / "out.pdf"], check=True)
    assert "an embedded file" in refused((tmp_path / "out.pdf").read_bytes())


def test_the_api_refuses_a_pdf_with_javascript_in_both_languages(world: RemovalWorld) -> None:
    pdf = with_catalog(b"/OpenAction 4 0 R", b"<< /S /JavaScript /JS (app.launchURL('http://x/')) >>")
    response = world.file(files=[proof("回单.pdf", pdf, "application/pdf")])
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("回单.pdf: 此 PDF 含有脚本") and "the PDF contains JavaScript" in detail


def without_end(data: bytes) -> bytes:
    """A PNG cut before its IEND chunk: it still decodes, but cannot be walked, so the parties' copy is drawn
    again."""
    return data[: data.rindex(b"IEND") - 4]


def with_junk(data: bytes) -> bytes:
    """A JPEG with stray bytes before its quantization table (a JPEG cut before its EOI decodes only now and then):
    it still decodes, but cannot be walked, so the parties' copy is drawn again."""
    at = data.index(b"\xff\xdb")
    return data[:at] + b"\x00\x00" + data[at:]


def test_a_palette_png_that_cannot_be_walked_keeps_its_colours_and_transparency(world: RemovalWorld) -> None:
    picture = Image.new("P", (8, 8), 1)
    picture.putpalette([0, 0, 255] + [255, 0, 0] * 255)
    picture.putpixel((7, 7), 0)
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at 31.4869N 120.3083E")
    out = io.BytesIO()
    picture.save(out, "PNG", pnginfo=info, transparency=0)
    data = without_end(out.getvalue())
    request_id = world.filed(files=[proof("scan.png", data, "image/png")])
    copy = download(world, request_id, data, "creditor")
    assert b"tEXt" not in copy and b"31.4869N" not in copy
    with Image.open(io.BytesIO(copy)) as served:
        rgba = served.convert("RGBA")
        assert rgba.getpixel((0, 0)) == (255, 0, 0, 255)  # the palette's red, not black
        assert rgba.getpixel((7, 7))[3] == 0  # the transparent one stays transparent
        assert not served.getexif() and "Comment" not in served.info


def test_a_turned_jpeg_that_cannot_be_walked_is_sent_upright_without_its_exif(world: RemovalWorld) -> None:
    picture = Image.new("RGB", (40, 20), (255, 0, 0))
    picture.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue; orientation 6: shown turned clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    exif[GPS] = {1: "N", 2: (31.0, 29.0, 12.0)}
    out = io.BytesIO()
    picture.save(out, "JPEG", exif=exif, quality=95)
    data = with_junk(out.getvalue())
    request_id = world.filed(files=[proof("IMG_0002.jpg", data, "image/jpeg")])
    copy = download(world, request_id, data, "debtor")
    assert b"PhoneMaker" not in copy and b"Exif" not in copy
    with Image.open(io.BytesIO(copy)) as served:
        assert not served.getexif()
        assert served.size == (20, 40)  # upright, as a viewer shows the original
        top, bottom = served.convert("RGB").getpixel((10, 5)), served.convert("RGB").getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60, top  # the left (red) is on top once turned clockwise
    assert bottom[2] > 200 and bottom[0] < 60, bottom


HIDDEN = {
    1: b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R /Names << /JavaScript << /Names [(x) 5 0 R] >> >> >>",
    2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    5: b"<< /S /JavaScript /JS (app.alert\\('pwned'\\);) >>",
}


def hidden_in_object_stream(variant: str, inner: dict[int, bytes] = HIDDEN) -> bytes:
    """A PDF 1.5 whose catalogue and actions are in a compressed object stream (object 4) found through an xref
    stream, the object stream's dictionary and keyword spelt as ``variant`` says."""
    header, body = [], b""
    for number, obj in inner.items():
        header.append(b"%d %d" % (number, len(body)))
        body += obj + b"\n"
    head = b" ".join(header) + b" "
    compressed = zlib.compress(head + body)
    kind = b"" if variant == "notype" else b"/Type /ObjStm "
    extra = {"fakeobj": b" /Foo (9 0 obj)", "long": b" /Foo [" + b"0 " * 2100 + b"]"}.get(variant, b"")
    keyword = b"stream\r" if variant == "cr" else b"stream\n"
    length = 20 if variant == "shortlen" else len(compressed)
    out = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n"
    at_objects = len(out)
    out += b"4 0 obj\n<< %s/N %d /First %d /Filter /FlateDecode /Length %d%s >>\n%s%s\nendstream\nendobj\n" % (
        kind,
        len(inner),
        len(head),
        length,
        extra,
        keyword,
        compressed,
    )
    at_xref = len(out)
    rows = [(0, 0, 65535), (2, 4, 0), (2, 4, 1), (2, 4, 2), (1, at_objects, 0), (2, 4, 3), (1, at_xref, 0)]
    table = b"".join(kind_.to_bytes(1, "big") + a.to_bytes(4, "big") + b.to_bytes(2, "big") for kind_, a, b in rows)
    out += b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 4 2] /Root 1 0 R /Length %d >>\nstream\n%s\nendstream\nendobj\n" % (
        len(table),
        table,
    )
    return out + b"startxref\n%d\n%%%%EOF\n" % at_xref


@pytest.mark.parametrize("variant", ["plain", "notype", "fakeobj", "long", "cr", "shortlen"])
def test_javascript_in_a_compressed_object_stream_is_found_however_the_stream_is_spelt(variant: str) -> None:
    """Without ``/Type /ObjStm``, with ``obj`` in a string, a long dictionary, ``stream`` and CR alone, a
    ``/Length`` shorter than the data: the stream is inflated to its ``endstream`` all the same."""
    said = refused(hidden_in_object_stream(variant))
    assert "the PDF contains JavaScript" in said, said


@pytest.mark.parametrize(
    ("action", "why"),
    [
        (b"<< /S /SubmitForm /F (http://x/) >>", "an action sending form data"),
        (b"<< /S /ImportData /F (data.fdf) >>", "an action importing data"),
        (b"<< /S /GoToR /F (other.pdf) /D [0 /Fit] >>", "an action opening another file"),
        (b"<< /S /GoT#6fE /T << /R /C /N (a) >> >>", "an action opening another file"),
    ],
)
def test_actions_sending_importing_or_opening_another_file_are_refused(action: bytes, why: str) -> None:
    assert f"the PDF contains {why}" in refused(with_catalog(b"/OpenAction 4 0 R", action))
    inner = {**HIDDEN, 1: b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>", 5: action}
    assert f"the PDF contains {why}" in refused(hidden_in_object_stream("notype", inner))


def test_a_link_to_a_web_page_is_accepted() -> None:
    accepted(with_catalog(b"", b"<< /Type /Annot /Subtype /Link /A << /S /URI /URI (https://bank.example/) >> >>"))


def flate_stream(dictionary: bytes, data: bytes) -> bytes:
    stored = zlib.compress(data)
    return b"<< %s /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (dictionary, len(stored), stored)


@pytest.mark.parametrize(
    "stream",
    [
        # a content stream, a picture: inflated and looked into whatever their dictionaries say
        flate_stream(b"", b"BT /F1 12 Tf (x) Tj ET /S /JavaScript"),
        flate_stream(b"/Subtype /Image /Width 1 /Height 1", b"\x00" * 300_000 + b"/JavaScript " + b"\x00" * 9),
        # hex and ASCII85 before /FlateDecode are undone
        b"<< /Filter [/ASCIIHexDecode /FlateDecode] >>\nstream\n%s>\nendstream"
        % zlib.compress(b"<< /S /JavaScript >>").hex().encode(),
        b"<< /Filter /ASCIIHexDecode >>\nstream\n%s>\nendstream" % b"<< /S /JavaScript >>".hex().encode(),
    ],
)
def test_javascript_in_any_stream_that_decodes_is_found(stream: bytes) -> None:
    assert "the PDF contains JavaScript" in refused(with_catalog(b"", stream))


@pytest.mark.parametrize(
    "stream",
    [
        # cut short: the data does not inflate to its end
        b"<< /Filter /FlateDecode /Length 9 >>\nstream\n%s\nendstream" % zlib.compress(b"q Q " * 5000)[:40],
        # no filter named, but zlib's header, and damaged
        b"<< /Length 9 >>\nstream\nx\x9c\xff\xff\xff\xff\xff\nendstream",
        # a filter this check cannot undo, filters kept in another object
        b"<< /Filter /LZWDecode /Length 3 >>\nstream\nabc\nendstream",
        b"<< /Filter 4 0 R /Length 6 >>\nstream\n3c3c3e>\nendstream",
    ],
)
def test_a_compressed_stream_that_cannot_be_checked_is_refused(stream: bytes) -> None:
    said = refused(with_catalog(b"", stream))
    assert "cannot be checked" in said, said


def test_a_large_flate_page_picture_is_accepted_and_scanned_without_being_held() -> None:
    import numpy

    noise = numpy.random.default_rng(7).integers(0, 4, size=24 * 1024 * 1024, dtype=numpy.uint8).tobytes()
    picture = flate_stream(
        b"/Type /XObject /Subtype /Image /Width 4096 /Height 2048 /ColorSpace /DeviceRGB /BitsPerComponent 8", noise
    )
    assert len(picture) < MAX
    started = time.monotonic()
    accepted(with_catalog(b"", picture))
    assert time.monotonic() - started < 5


def png_rows(data: bytes, width: int, kind: int) -> bytes:
    """``data`` in rows of ``width`` bytes, each filtered with PNG's Sub (1) or Up (2) on one byte a pixel."""
    rows, previous, out = [data[i : i + width] for i in range(0, len(data), width)], bytes(width), b""
    for row in rows:
        row = row.ljust(width, b" ")
        if kind == 1:
            out += b"\x01" + bytes([row[0]]) + bytes((row[i] - row[i - 1]) & 0xFF for i in range(1, width))
        else:
            out += b"\x02" + bytes((a - b) & 0xFF for a, b in zip(row, previous, strict=True))
        previous = row
    return out


@pytest.mark.parametrize("kind", [1, 2])
def test_javascript_behind_a_png_predictor_is_found(kind: int) -> None:
    params = b"/DecodeParms << /Predictor 12 /Columns 8 >>"
    stream = flate_stream(params, png_rows(b"<< /S /JavaScript /JS (app.alert(1)) >>", 8, kind))
    assert "the PDF contains JavaScript" in refused(with_catalog(b"", stream))
    accepted(with_catalog(b"", flate_stream(params, png_rows(b"<< /Type /Font /Subtype /Type1 >>", 8, kind))))
