"""No request body over the cap reaches a route: a declared one is answered 413 at once, a streamed one cut off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from server.api.body_limit import MAX_BODY_BYTES
from server.app import create_app
from tests.server.auth_helpers import make_settings


def test_a_body_over_the_cap_is_refused(engine: Engine, database_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as client:
        declared = client.post("/api/auth/login", content=b"x" * (MAX_BODY_BYTES + 1))

        def chunks() -> Iterator[bytes]:
            for _ in range(MAX_BODY_BYTES // 65536 + 2):
                yield b"x" * 65536

        streamed = client.post("/api/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
        small = client.post("/api/auth/login", json={"username": "nobody", "password": "not this one at all"})

    refused = f"请求体超过 {MAX_BODY_BYTES} 字节。 / request body larger than {MAX_BODY_BYTES} bytes"
    assert declared.status_code == 413 and declared.json() == {"detail": refused}
    assert streamed.status_code == 413 and streamed.json() == {"detail": refused}  # not the form parser's 400
    assert small.status_code == 401
