"""The pages' static files (``server/web/static/``: vendored htmx and its SSE extension, our app.js and app.css),
served from memory with cache headers.

Pages link them by :func:`static_url` — ``/static/app.js?v=<first 16 hex of the file's SHA-256>`` — so a versioned
URL never changes meaning and is cached for a year (``immutable``); any other request for the file gets an ``ETag``
and ``no-cache`` (the browser asks again, and gets ``304 Not Modified`` while the file is unchanged).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

from fastapi import APIRouter, Query, Request, Response

from server.api.routing import ValidatedRoute
from server.errors import NotFound

router = APIRouter(include_in_schema=False, route_class=ValidatedRoute)  # a bad ?v= is a 422 in both languages

MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@cache
def static_files() -> dict[str, StaticFile]:
    """Every servable file under ``static/`` by its path there (licences and READMEs are not served)."""
    found: dict[str, StaticFile] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
                continue
            suffix = "." + entry.name.rpartition(".")[2]
            if suffix in MEDIA_TYPES and suffix != ".txt":
                body = entry.read_bytes()
                version = hashlib.sha256(body).hexdigest()[:16]
                found[prefix + entry.name] = StaticFile(body, MEDIA_TYPES[suffix], version)

    walk(resources.files("server.web").joinpath("static"), "")
    return found


def static_url(name: str) -> str:
    """The versioned URL of a static file; a name that is not there is an error (a template's typo fails loudly)."""
    return f"/static/{name}?v={static_files()[name].version}"


@router.get("/static/{path:path}")
def static_file(path: str, request: Request, v: str | None = Query(None, max_length=64)) -> Response:
    """A static file of the pages (cached for a year under its versioned URL, else revalidated by ETag)."""
    found = static_files().get(path)
    if found is None:
        raise NotFound(f"no static file {path[:200]!r}")
    cache_control = IMMUTABLE if v == found.version else "no-cache"
    headers = {"ETag": found.etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if found.etag in request.headers.get("If-None-Match", ""):
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
