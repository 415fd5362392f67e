"""A filing refused half-way on an S3-compatible store (a real SeaweedFS) removes from the bucket the proof it wrote,
as on a directory; an object another request holds stays."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from seal_dev.s3 import PrivateS3
from server.app import create_app
from server.core.db import SessionFactory
from server.removal.proofs import ProofStore
from tests.server.auth_helpers import make_settings
from tests.server.helpers import CASE_B
from tests.server.removal_world import make_world, pdf_bytes, proof
from tests.server.s3_helpers import s3_settings
from tests.server.test_removal_proof_leftovers import FailingObjects


def test_a_refused_filing_removes_from_the_bucket_what_it_wrote(
    s3_store: PrivateS3, session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    settings = s3_settings(make_settings(database_url, tmp_path), s3_store, tmp_path)
    prefix = f"{settings.storage.key_prefix}removal-proofs/"
    bucket = s3_store.client()

    def keys() -> set[str]:
        listed = bucket.list_objects_v2(Bucket=s3_store.bucket, Prefix=prefix).get("Contents", [])
        return {item["Key"].removeprefix(prefix).split(".")[0] for item in listed}

    shared, fresh, failing = pdf_bytes("s3 shared"), pdf_bytes("s3 fresh"), pdf_bytes("s3 no room")
    with TestClient(create_app(settings, with_ingest=False)) as client:
        world = make_world(session_factory, tmp_path, client)
        world.filed(who="debtor-b", case_no=CASE_B, files=[proof("b.pdf", shared, "application/pdf")])
        store: ProofStore = cast(FastAPI, client.app).state.context.stores.proofs
        store.backend = FailingObjects(store.backend, hashlib.sha256(failing).hexdigest())
        files = [(name, data) for name, data in (("f.pdf", fresh), ("s.pdf", shared), ("x.pdf", failing))]
        response = world.file(files=[proof(name, data, "application/pdf") for name, data in files])
        assert response.status_code == 503, response.text
        assert keys() == {hashlib.sha256(shared).hexdigest()}
