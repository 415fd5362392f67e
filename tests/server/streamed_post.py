"""A POST sent to the app as a client's socket would send it: the body in chunks, each pulled by the server only when
it asks for more, so a test can tell how much of a body the server read before it answered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
from fastapi.testclient import TestClient

from tests.server.removal_world import build_pdf

CHUNK = 64 * 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    pulled: int  # bytes of the body the server asked for before it answered
    sent: int  # bytes of the whole body

    def json(self) -> Any:
        return httpx.Response(self.status, content=self.body).json()


def form_body(fields: dict[str, str], files: Sequence[tuple[str, tuple[str, bytes, str]]]) -> tuple[bytes, str]:
    """A multipart/form-data body (as httpx encodes one) and its content type."""
    request = httpx.Request("POST", "http://testserver/", data=fields, files=list(files))
    return request.read(), request.headers["content-type"]


def big_pdf(size: int) -> bytes:
    """A well-formed PDF of about ``size`` bytes (one stream of padding)."""
    padding = b"0" * size
    return build_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [] /Count 0 >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(padding), padding),
    )


def post_streamed(
    client: TestClient, path: str, body: bytes, headers: dict[str, str], *, declare_length: bool
) -> Answer:
    """POST ``body`` to ``path`` of the started ``client``'s app, in :data:`CHUNK`-byte pieces, with a
    ``Content-Length`` if ``declare_length`` (else as a chunked upload does); the answer, and how much was pulled."""
    all_headers = {k.lower(): v for k, v in headers.items()}
    all_headers.setdefault("host", "testserver")
    if declare_length:
        all_headers["content-length"] = str(len(body))
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not chunks:
            return {"type": "http.disconnect"}
        chunk = chunks.pop(0)
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.encode(), v.encode()) for k, v in all_headers.items()],
            "client": ("203.0.113.9", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        await client.app(scope, receive, send)  # type: ignore[arg-type]

    assert client.portal is not None, "start the client first (with TestClient(app) as client)"
    client.portal.call(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], answer_headers, data, pulled, len(body))
