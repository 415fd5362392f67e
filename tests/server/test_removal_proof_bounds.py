"""A proof PDF's check is bounded: memory and work linear in the file's size with a small constant, capped in total,
whatever the file's shape (the hostile shapes of the review: the keyword ``stream`` many times without
``endstream``, streams inflating to ``/`` bytes, one-byte predictor rows), and what exceeds the caps is refused
saying so in both languages. A case's filings refused for their files count: after
:data:`~server.removal.refusals.MAX_REFUSED_PER_DAY` of them in a day, the next is turned away unread."""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.core.db import SessionFactory
from server.errors import Conflict
from server.removal.errors import ProofRefused
from server.removal.pdf_content import MAX_STREAMS
from server.removal.proofs import check_proof
from server.removal.refusals import MAX_REFUSED_PER_DAY, RefusedProofs, costly
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_A
from tests.server.removal_world import RemovalWorld, build_pdf, make_world, proof

MiB = 1024 * 1024
CATALOG = b"<< /Type /Catalog >>"


def keywords(n: int) -> bytes:
    """The keyword ``stream`` ``n`` times and no ``endstream``: each keyword's body runs to the file's end."""
    return build_pdf(CATALOG + b"\n" + b"stream\n" * n)


def slashes(inflated: int, streams: int) -> bytes:
    """``streams`` Flate streams, each inflating to ``inflated`` bytes of ``/`` (each an empty PDF name)."""
    z = zlib.compress(b"/" * inflated, 9)
    one = b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(z), z)
    return build_pdf(CATALOG, *[one] * streams)


def one_byte_rows(n: int) -> bytes:
    """A Flate stream of ``n`` one-byte rows behind a PNG predictor (a Python call each, undone one by one)."""
    z = zlib.compress(b"\x02\x00" * n, 9)
    return build_pdf(
        CATALOG,
        b"<< /Filter /FlateDecode /DecodeParms << /Predictor 12 /Columns 1 >> /Length %d >>\nstream\n%s\nendstream"
        % (len(z), z),
    )


def check(data: bytes) -> str | None:
    """The refusal's words, or ``None`` if accepted."""
    try:
        check_proof(data, filename="r.pdf", declared_type="application/pdf", max_bytes=10 * MiB)
    except ProofRefused as exc:
        return str(exc)
    return None


def peak_of(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stream_keywords_without_endstream_take_no_more_memory_than_the_file() -> None:
    """Old code: 55 KiB peaked at 215 MiB (every body copied, to the file's end)."""
    data = keywords(MAX_STREAMS - 10)
    assert check(data) is None
    assert peak_of(lambda: check(data)) < 2 * MiB


def test_more_stream_keywords_than_checked_are_refused_in_both_languages() -> None:
    data = keywords(200_000)  # 1.3 MiB
    peak = peak_of(lambda: check(data))
    said = check(data)
    assert said is not None and "此 PDF 结构过于复杂" in said and "too complex to be checked" in said, said
    assert said.index("此 PDF") < said.index("the PDF")
    assert peak < 4 * len(data), peak


def test_streams_inflating_past_the_budget_are_refused_in_bounded_memory() -> None:
    data = slashes(8 * MiB, 128)  # 1 MiB of file, 1 GiB of '/' once inflated
    peak = peak_of(lambda: check(data))
    said = check(data)
    assert said is not None and "cannot be checked" in said, said
    assert peak < 8 * MiB, peak


def test_javascript_after_a_megabyte_of_slashes_is_found() -> None:
    z = zlib.compress(b"/" * MiB + b"/JavaScript", 9)
    data = build_pdf(CATALOG, b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(z), z))
    said = check(data)
    assert said is not None and "the PDF contains JavaScript" in said, said


def test_more_predictor_rows_than_checked_are_refused() -> None:
    said = check(one_byte_rows(4 * MiB))
    assert said is not None and "cannot be checked" in said, said
    assert check(one_byte_rows(10_000)) is None


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def test_filings_refused_for_their_files_count_and_then_the_case_is_turned_away(world: RemovalWorld) -> None:
    hostile = proof("r.pdf", keywords(MAX_STREAMS + 1), "application/pdf")
    for _ in range(MAX_REFUSED_PER_DAY):
        response = world.file(files=[hostile])
        assert response.status_code == 422, response.text
    turned_away = world.file()  # a good file: not read
    assert turned_away.status_code == 409, turned_away.text
    detail = turned_away.json()["detail"]
    assert "因文件不合格被拒绝" in detail and "refused for their files" in detail, detail
    full_width = CASE_A.replace("(", "（").replace(")", "）")
    assert world.file(case_no=full_width).status_code == 409  # every spelling of the case is the case


def test_only_refusals_of_the_checks_that_cost_work_are_charged() -> None:
    """A file too large or of the wrong type is refused from its first bytes: it does not count (finding 4)."""
    refusals, now = RefusedProofs(limit=1), datetime(2026, 12, 6, tzinfo=UTC)
    for cheap in (b"", b"GIF89a not a proof", b"%PDF-1.5\n" + b"x" * 2048):
        with pytest.raises(ProofRefused) as refusal:
            check_proof(cheap, filename="a.pdf", declared_type="application/pdf", max_bytes=1024)
        assert not costly(refusal.value)
        refusals.charge(CASE_A, now, refusal.value)
    refusals.check(CASE_A, now)  # nothing counted
    with pytest.raises(ProofRefused) as refusal:
        check_proof(keywords(MAX_STREAMS + 1), filename="a.pdf", declared_type="application/pdf", max_bytes=10 * MiB)
    assert costly(refusal.value)
    refusals.charge(CASE_A, now, refusal.value)
    with pytest.raises(Conflict):
        refusals.check(CASE_A, now)


def test_filings_refused_from_their_first_bytes_do_not_turn_the_case_away(world: RemovalWorld) -> None:
    """A debtor who picks a wrong file (a GIF, an empty one) many times is refused each time, and never turned away:
    only refusals of the checks that cost work count (server/removal/service.py charges with the reason)."""
    for _ in range(MAX_REFUSED_PER_DAY + 1):
        response = world.file(files=[proof("a.gif", b"GIF89a not a proof", "image/gif")])
        assert response.status_code == 422, response.text
    assert world.file().status_code == 201
