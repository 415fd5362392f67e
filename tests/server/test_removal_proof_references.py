"""An ``/OpenAction`` referring to another object (``/OpenAction 4 0 R``) is as harmless as every definition of that
object: each in the file's bytes — an incremental update appending a redefinition is what a reader takes (the
review's finding 3: a URI beacon behind a harmless first definition) — and each in an object stream, where
Acrobat-optimised and PDF 1.5 writers keep a lone /GoTo (finding 2: refused before). One defined nowhere, or in an
object stream whose layout cannot be told, is refused."""

from __future__ import annotations

import zlib

import pytest

from server.removal.pdf_content import active_content
from server.removal.proofs import check_proof
from tests.server.removal_world import build_pdf
from tests.server.test_removal_proof_active import PAGES, URI, refused, with_catalog

GOTO = b"<< /S /GoTo /D [3 0 R /Fit] >>"
OPENS_9 = b"<< /Type /Catalog /Pages 2 0 R /OpenAction 9 0 R >>"
WHEN_OPENED = "an action run when the file or a page is opened"


def object_stream(objects: dict[int, bytes], *, first: bytes | None = None, kind: bytes = b"/Type /ObjStm") -> bytes:
    """A Flate object stream holding ``objects`` (number: definition), its /First given directly unless ``first``."""
    offsets, at = [], 0
    for number, obj in objects.items():
        offsets.append(b"%d %d" % (number, at))
        at += len(obj) + 1
    head = b" ".join(offsets) + b"\n"
    stored = zlib.compress(head + b"\n".join(objects.values()))
    given = b"%d" % len(head) if first is None else first
    return b"<< %s /N %d /First %s /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (
        kind,
        len(objects),
        given,
        len(stored),
        stored,
    )


def updated(base: bytes, *objects: tuple[int, bytes]) -> bytes:
    """``base`` with an incremental update appended redefining ``objects`` (its xref's offsets computed)."""
    out, offsets = base, []
    for number, body in objects:
        offsets.append((number, len(out)))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n" + b"".join(b"%d 1\n%010d 00000 n \n" % (n, at) for n, at in offsets)
    return out + b"trailer\n<< /Size 9 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (base.rfind(b"xref"), xref)


def accepted(data: bytes) -> None:
    assert active_content(data) is None
    check_proof(data, filename="回单.pdf", declared_type="application/pdf", max_bytes=10 << 20)


@pytest.mark.parametrize(
    "pdf",
    [
        build_pdf(OPENS_9, *PAGES, object_stream({9: GOTO})),
        build_pdf(OPENS_9, *PAGES, object_stream({9: b"[3 0 R /XYZ null null 0]"})),
        build_pdf(OPENS_9, *PAGES, object_stream({8: b"<< /Type /Font >>", 9: GOTO}, kind=b"")),
        build_pdf(OPENS_9, *PAGES, object_stream({1: OPENS_9, 9: GOTO})),
        build_pdf(OPENS_9, *PAGES, object_stream({9: b"[3 0 R /Fit]"}), object_stream({9: GOTO})),
        updated(with_catalog(b"/OpenAction 4 0 R", b"[3 0 R /Fit]"), (4, GOTO)),
    ],
)
def test_a_goto_kept_in_an_object_stream_or_redefined_as_one_is_accepted(pdf: bytes) -> None:
    accepted(pdf)


@pytest.mark.parametrize(
    "pdf",
    [
        updated(with_catalog(b"/OpenAction 4 0 R", b"[3 0 R /Fit]"), (4, URI)),
        updated(with_catalog(b"/OpenAction 4 0 R", GOTO), (4, b"<< /S /Named /N /Print >>")),
        updated(with_catalog(b"/OpenAction 4 0 R", GOTO), (7, object_stream({4: URI}))),
        with_catalog(b"/OpenAction 4 0 R", b"[3 0 R /Fit]") + b"04 00 obj\n" + URI + b"\nendobj\n",
        with_catalog(b"/OpenAction 4 0 R", b"[3 0 R /Fit]", object_stream({4: URI})),
        build_pdf(OPENS_9, *PAGES, object_stream({9: GOTO}), object_stream({9: URI})),
        build_pdf(OPENS_9, *PAGES, object_stream({9: GOTO}, first=b"5 0 R"), b"4"),
        build_pdf(OPENS_9, *PAGES, object_stream({8: GOTO})),
        build_pdf(OPENS_9, *PAGES, object_stream({1: OPENS_9, 9: GOTO}), object_stream({9: URI}, kind=b"")),
        with_catalog(b"/OpenAction 4 1 R", object_stream({4: GOTO})),
    ],
)
def test_an_opening_action_any_definition_of_which_acts_is_refused(pdf: bytes) -> None:
    assert WHEN_OPENED in refused(pdf)
