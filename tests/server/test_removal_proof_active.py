"""Every construct of a proof PDF that acts or carries content of its own is refused, however its names are spelt
and wherever its objects are kept: a file attached to an annotation without the word EmbeddedFile, an action run
when the file or a page is opened (a URI: a beacon when the judge opens it), sound, video, 3D, form actions. A
destination or a lone /GoTo as the opening action is no active content."""

from __future__ import annotations

import zlib

import pytest

from server.removal.errors import ProofRefused
from server.removal.proofs import check_proof
from tests.server.removal_world import build_pdf

PAGES = (b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>")
EXE = b"MZ\x90\x00 pretend this is a program"


def with_catalog(extra: bytes, *more: bytes) -> bytes:
    return build_pdf(b"<< /Type /Catalog /Pages 2 0 R " + extra + b" >>", *PAGES, *more)


def attachment() -> bytes:
    """The review's: a FileAttachment annotation whose file stream has no /Type /EmbeddedFile (it is optional)."""
    return build_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        PAGES[0],
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots [4 0 R] >>",
        b"<< /Type /Annot /Subtype /FileAttachment /Rect [10 10 40 40] /Contents (receipt) "
        b"/FS << /Type /Filespec /F (invoice.pdf.exe) /UF (invoice.pdf.exe) /EF << /F 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(EXE), EXE),
    )


def in_object_stream(catalog: bytes, *objects: bytes) -> bytes:
    """The catalogue (object 1) and ``objects`` (from 4) compressed in an object stream, no /Type /ObjStm."""
    kept = [catalog, *objects]
    numbers = [1, *range(4, 4 + len(objects))]
    offsets, at = [], 0
    for number, obj in zip(numbers, kept, strict=True):
        offsets.append(b"%d %d" % (number, at))
        at += len(obj) + 1
    head = b" ".join(offsets) + b" "
    stored = zlib.compress(head + b" ".join(kept))
    stream = b"<< /N %d /First %d /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (
        len(kept),
        len(head),
        len(stored),
        stored,
    )
    return build_pdf(b"<< /Type /Catalog /Pages 2 0 R >>", *PAGES, stream)


def refused(data: bytes) -> str:
    with pytest.raises(ProofRefused) as refusal:
        check_proof(data, filename="回单.pdf", declared_type="application/pdf", max_bytes=10 << 20)
    return str(refusal.value)


URI = b"<< /S /URI /URI (http://attacker.example/opened?case=1) >>"
SOUND = b"<< /Type /Sound /R 8000 /Length 4 >>\nstream\n\x00\x00\x00\x00\nendstream"


@pytest.mark.parametrize(
    ("pdf", "why"),
    [
        (attachment(), "an embedded file"),
        (with_catalog(b"/OpenAction " + URI), "an action run when the file or a page is opened"),
        (with_catalog(b"/Open#41ction " + URI), "an action run when the file or a page is opened"),
        (with_catalog(b"/OpenAction 4 0 R", URI), "an action run when the file or a page is opened"),
        (with_catalog(b"/OpenAction << /S /GoTo /D [3 0 R /Fit] /Next " + URI + b" >>"), "an action run when"),
        (with_catalog(b"/OpenAction << /S /Named /N /Print >>"), "an action run when the file or a page is opened"),
        (in_object_stream(b"<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>", URI), "an action run when"),
        (in_object_stream(b"<< /Type /Catalog /Pages 2 0 R /OpenAction " + URI + b" >>"), "an action run when"),
        (with_catalog(b"/AA << /O " + URI + b" >>"), "an action run when the file or a page is opened"),
        (with_catalog(b"/OpenAction << /S /Sound /Sound 4 0 R >>", SOUND), "sound, video or 3D content"),
        (with_catalog(b"", b"<< /S /Rendition /R 5 0 R /OP 0 >>"), "sound, video or 3D content"),
        (with_catalog(b"", b"<< /S /M#6fvie /T (a) >>"), "sound, video or 3D content"),
        (with_catalog(b"", b"<< /Type /Annot /Subtype /Screen /Rect [0 0 1 1] >>"), "sound, video or 3D content"),
        (in_object_stream(b"<< /Type /Catalog >>", b"<< /Subtype /3D /3DD 5 0 R >>"), "sound, video or 3D"),
        (in_object_stream(b"<< /Type /Catalog >>", b"<< /F (a.exe) /#45F << /F 5 0 R >> >>"), "an embedded file"),
        (with_catalog(b"", b"<< /S /ResetForm >>"), "an action changing a form"),
    ],
)
def test_active_or_embedded_content_is_refused_saying_what(pdf: bytes, why: str) -> None:
    said = refused(pdf)
    assert "此 PDF 含有" in said and f"the PDF contains {why}" in said, said


@pytest.mark.parametrize(
    "pdf",
    [
        with_catalog(b"/OpenAction [3 0 R /Fit]"),
        with_catalog(b"/OpenAction << /S /GoTo /D [3 0 R /Fit] >>"),
        with_catalog(b"/OpenAction 4 0 R", b"[3 0 R /XYZ null null 0]"),
        with_catalog(b"/OpenAction 4 0 R", b"<< /S /GoTo /D [3 0 R /Fit] >>"),
        in_object_stream(b"<< /Type /Catalog /Pages 2 0 R /OpenAction [3 0 R /Fit] >>"),
        with_catalog(b"", b"<< /Type /Annot /Subtype /Link /A << /S /URI /URI (https://bank.example/) >> >>"),
    ],
)
def test_a_destination_or_a_goto_on_opening_is_accepted(pdf: bytes) -> None:
    check_proof(pdf, filename="回单.pdf", declared_type="application/pdf", max_bytes=10 << 20)
