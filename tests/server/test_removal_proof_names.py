"""The everyday words among the names of active content (Screen, Sound, Movie, Hide, AA, EF, 3D, …) count only
where they act: as an action's type (``/S``) or an annotation's (``/Subtype``), and ``/AA``, ``/EF`` as a
dictionary's key. A receipt's text ("Phone case/Screen protector", "Show/Hide", "Batteries AA/AA") and the blend
mode ``/BM /Screen`` are no active content (the review's finding 1); the same names where they act are refused,
however they are spelt or spaced, also when a key's value is in the next piece of an inflated stream."""

from __future__ import annotations

import io
import zlib

import pytest
from reportlab.pdfgen import canvas

from server.removal.pdf_content import CHUNK, active_content
from server.removal.proofs import check_proof
from tests.server.removal_world import build_pdf
from tests.server.test_removal_proof_active import PAGES, in_object_stream, refused, with_catalog

TEXTS = [
    "Invoice: 1 x Phone case/Screen protector  12.00",
    "Payment received: Show/Hide",
    "Headphones/Sound bar",
    "DVD/Movie rental",
    "Batteries AA/AA, 2 x",
    "Model 3D/EF/AA, S/Sound, Subtype/Screen",
    "FileAttachment/Rendition/ResetForm/GoTo3DView",
]


def reportlab_pdf(text: str, *, compress: bool) -> bytes:
    out = io.BytesIO()
    page = canvas.Canvas(out, pageCompression=1 if compress else 0)
    page.drawString(72, 700, text)
    page.showPage()
    page.save()
    return out.getvalue()


def accepted(data: bytes) -> None:
    assert active_content(data) is None
    check_proof(data, filename="receipt.pdf", declared_type="application/pdf", max_bytes=10 << 20)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("text", TEXTS)
def test_a_receipt_whose_text_has_the_words_is_accepted(text: str, compress: bool) -> None:
    accepted(reportlab_pdf(text, compress=compress))


def test_the_screen_blend_mode_is_no_screen_annotation() -> None:
    accepted(with_catalog(b"", b"<< /Type /ExtGState /BM /Screen /ca 0.5 >>", b"<< /BM [/Screen /Normal] >>"))


def test_a_picture_whose_bytes_have_a_key_before_a_long_black_run_is_accepted() -> None:
    """``/S`` (bytes 47, 83) before 300 KB of black: the key's value is not in sight for long, and is no name."""
    pixels = zlib.compress((b"\x80/S" + b"\x00" * (300 * 1024) + b"\x7f" * 100) * 3)
    image = b"<< /Type /XObject /Subtype /Image /Width 100 /Height 10 /Filter /FlateDecode /Length %d >>" % len(pixels)
    accepted(build_pdf(b"<< /Type /Catalog >>", image + b"\nstream\n" + pixels + b"\nendstream"))


SPACED = [
    b"<< /S%comment\r\n/So#75nd /Sound 5 0 R >>",
    b"<< /Sub#74ype /Scr#65en /Rect [0 0 1 1] >>",
    b"<< /Subtype\n/FileAttachment /FS (a.exe) >>",
    b"<< /Subtype /3D >>",
    b"<< /S /Hide /T (field) >>",
    b"<< /S /GoTo3DView /TA 5 0 R >>",
    b"<< /S /RichMediaExecute >>",
    b"<< /Type /Page /A#41 7 0 R >>",
    b"<< /Type /Page /AA%x\n<< /O 7 0 R >> >>",
    b"<< /F (a.exe) /EF 5 0 R >>",
    b"<< /F (a.exe) /E#46\t<< /F 5 0 R >> >>",
]


@pytest.mark.parametrize("obj", SPACED)
def test_the_names_where_they_act_are_refused_however_spelt(obj: bytes) -> None:
    assert active_content(with_catalog(b"", obj)) is not None
    assert "the PDF contains" in refused(in_object_stream(b"<< /Type /Catalog >>", obj))


@pytest.mark.parametrize(
    "gap",
    [
        b" " * (CHUNK + 5000),
        b" %" + b"x" * 60 + b"\n ",
        b"\n" * 100_000,
        b" " * (CHUNK - 40) + b"%" + b"x" * 60 + b"\n ",  # a comment cut by the piece's end: the key is far before it
        b" " * (CHUNK - 20) + b"%" + b"x" * 30 + b"\r%" + b"x" * 50 + b"\n ",
    ],
)
@pytest.mark.parametrize(("key", "value"), [(b"/Subtype", b"/Screen"), (b"/AA", b"<< /O 7 0 R >>")])
def test_a_value_far_from_its_key_in_an_inflated_stream_is_found(gap: bytes, key: bytes, value: bytes) -> None:
    """The key in one piece of the inflated data, its value in a later one (the separators longer than a piece)."""
    data = zlib.compress(b"<< " + key + gap + value + b" >>")
    stream = b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(data), data)
    assert active_content(build_pdf(b"<< /Type /Catalog /Pages 2 0 R >>", *PAGES, stream)) is not None


def test_a_comment_hides_the_value() -> None:
    """``/S %/Sound`` has no value in sight: the name is in a comment (a reader's reading)."""
    assert active_content(with_catalog(b"", b"<< /S %/Sound\n/GoTo /D [3 0 R /Fit] >>")) is None


@pytest.mark.xfail(reason="a comment longer than MAX_COMMENT between a key and its value hides it (kept linear)")
def test_a_long_comment_between_key_and_value_is_seen_through() -> None:
    assert active_content(with_catalog(b"", b"<< /S %" + b"x" * 300 + b"\n/Sound >>")) is not None


def test_lines_of_comments_naming_keys_cost_time_linear_in_their_number() -> None:
    """``%/S`` on line after line: each key inside a comment looks at most a few dozen separators ahead, not to the
    end of the run (before: quadratic, 16,000 such lines took 9 s of CPU and 64,000 would take minutes, past the
    suite's per-test timeout; now a tenth of a second)."""
    for count in (4_000, 64_000):
        run = b"%/S\n" * count + b"q"
        assert active_content(with_catalog(b"", b"<< /S " + run + b" >>")) is None
        data = zlib.compress(run)
        stream = b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(data), data)
        assert active_content(build_pdf(b"<< /Type /Catalog /Pages 2 0 R >>", *PAGES, stream)) is None
