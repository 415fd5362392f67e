"""A filing that is not filed leaves no proof file of its own in the store: neither one that loses the race to
another filing of the case (refused by the check in its transaction), nor one whose store fails half-way. A file
another request holds (the same bytes, another case) stays."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import ImageFile
from sqlalchemy import func, select

from server.app import create_app
from server.core.blobs import Blob, ObjectBackend
from server.core.db import SessionFactory
from server.removal.models import RemovalProof, RemovalRequest
from server.removal.proofs import ProofStore
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_B
from tests.server.removal_world import RemovalWorld, make_world, pdf_bytes, picture_bytes, proof


@pytest.fixture
def world(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[RemovalWorld]:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        yield make_world(session_factory, tmp_path, client)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(tmp_path: Path) -> set[str]:
    directory = tmp_path / "removal-proofs"
    return {p.name.split(".")[0] for p in directory.iterdir()} if directory.exists() else set()


def referenced(world: RemovalWorld) -> set[str]:
    with world.session_factory() as session:
        return set(session.scalars(select(RemovalProof.sha256)))


def test_a_filing_that_loses_the_race_leaves_no_file(
    world: RemovalWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the loser's picture decodes (no transaction held), another filing of the case lands; the loser's own
    transaction then refuses it (409). None of its files is left in the store; the winner's, which the loser sent
    too, stays."""
    winner = pdf_bytes("winner")
    load = ImageFile.ImageFile.load
    landed: list[int] = []

    def another_filing_lands(self: ImageFile.ImageFile) -> object:
        if not landed:  # the first picture decoded: the winner files now, through the API (a PDF: no decoding)
            landed.append(world.file(files=[proof("w.pdf", winner, "application/pdf")]).status_code)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", another_filing_lands)
    photo = picture_bytes("PNG", (64, 48), 17)
    receipts = [pdf_bytes(f"loser {i}") for i in range(3)]
    files = [proof("p.png", photo, "image/png"), proof("w.pdf", winner, "application/pdf")]
    files += [proof(f"r{i}.pdf", data, "application/pdf") for i, data in enumerate(receipts)]
    response = world.file(files=files)
    assert landed == [201]
    assert response.status_code == 409, response.text
    with world.session_factory() as session:
        assert session.scalar(select(func.count(RemovalRequest.id))) == 1
    assert stored(tmp_path) == referenced(world) == {sha(winner)}


class FailingObjects:
    """The proof store's real backend, failing the write of one object as a full disk would."""

    def __init__(self, backend: ObjectBackend, failing: str) -> None:
        self.backend = backend
        self.description = backend.description
        self.failing = failing

    def put_once(self, name: str, data: bytes) -> bool:
        if name.startswith(self.failing):
            raise OSError(28, "No space left on device")
        return self.backend.put_once(name, data)

    def open(self, name: str) -> Blob | None:
        return self.backend.open(name)

    def remove(self, name: str) -> None:
        self.backend.remove(name)

    def size(self, name: str) -> int | None:
        return self.backend.size(name)

    def check(self) -> None:
        self.backend.check()


def test_a_filing_whose_store_fails_half_way_leaves_no_file_of_its_own(world: RemovalWorld, tmp_path: Path) -> None:
    """Its first file written, its third refused by the disk: nothing is filed, the file it wrote is removed, and
    the file that case B's request holds (the same bytes, sent again) stays — it is evidence of B's request."""
    shared, fresh, failing = pdf_bytes("shared"), pdf_bytes("fresh"), pdf_bytes("no room for this one")
    world.filed(who="debtor-b", case_no=CASE_B, files=[proof("b.pdf", shared, "application/pdf")])
    store: ProofStore = cast(FastAPI, world.client.app).state.context.stores.proofs
    store.backend = FailingObjects(store.backend, sha(failing))
    files = [
        proof("fresh.pdf", fresh, "application/pdf"),
        proof("shared.pdf", shared, "application/pdf"),
        proof("failing.pdf", failing, "application/pdf"),
    ]
    response = world.file(files=files)
    assert response.status_code == 503, response.text
    with world.session_factory() as session:
        assert session.scalar(select(func.count(RemovalRequest.id))) == 1  # B's alone
    assert stored(tmp_path) == referenced(world) == {sha(shared)}
    assert world.filed(files=files[:2]) > 0  # the files are written again by the next filing that holds them
    assert stored(tmp_path) == referenced(world) == {sha(shared), sha(fresh)}
