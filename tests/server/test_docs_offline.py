"""``/docs`` and ``/redoc`` on a court intranet: the pages load only what this server serves (the vendored Swagger UI
and ReDoc), the OpenAPI document names the bearer token so Swagger UI can send it, and calls made from the page work
without weakening the CSRF check of cookie-authenticated calls."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from server.api.deps import BEARER_SCHEME
from server.api.docs import STATIC_DIR
from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory
from tests.server.auth_helpers import PASSWORD, add_user, bearer, make_settings

BASE = "http://testserver"
PAGES = ["/docs", "/redoc"]
#: Operations anyone may call (as in test_authz_matrix); every other one needs a login.
PUBLIC_OPERATIONS = {
    ("get", "/api/health"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/access-code"),  # the debtor's sign-in with the case's access code
    ("get", "/api/removal-grounds"),
    ("get", "/metrics"),
    ("get", "/api/log/checkpoint"),  # the evidence log's signed checkpoint and its key are published
    ("get", "/api/log/key"),
    ("get", "/api/log/checkpoint/timestamp"),  # the checkpoint's RFC 3161 time stamp and its TSA's chain, as public
    ("get", "/api/log/checkpoint/timestamp/chain"),
    ("get", "/api/log/consistency"),  # a proof between signed checkpoints: to check a bundle against a fetched one
    ("get", "/api/notices/verify"),  # a notice's QR code is checked by whoever reads it, and with the public key
    ("get", "/api/notices/key"),
    ("get", "/notice/{token}"),
}
CSRF = {"X-Requested-With": "fetch"}
REPO = Path(__file__).resolve().parents[2]

#: Whatever a page or stylesheet makes the browser fetch: src/href/spec-url attributes, CSS url(...), and the
#: ``url: '...'`` of the OpenAPI document in Swagger UI's start-up script.
REFERENCE = re.compile(
    r"""(?:\b(?:src|href|spec-url)\s*=\s*["']([^"']*)["'])"""
    r"""|(?:url\(\s*["']?([^"')\s]+))"""
    r"""|(?:\burl:\s*["']([^"']*)["'])""",
    re.IGNORECASE,
)


def references(text: str) -> list[str]:
    return [next(group for group in match.groups() if group is not None) for match in REFERENCE.finditer(text)]


def foreign(urls: list[str], base: str) -> list[str]:
    """The URLs of ``urls`` (relative to ``base``) that would go to another host; ``data:`` URLs go nowhere."""
    origin = urlsplit(BASE)
    away = []
    for url in urls:
        parts = urlsplit(urljoin(base, url))
        if parts.scheme == "data":
            continue
        if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
            away.append(url)
    return away


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    """An app with a clerk; the client holds no cookie and sends no header of its own."""
    add_user(session_factory, "clerk", Role.CLERK)
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False), base_url=BASE) as instance:
        yield instance


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_refer_only_to_this_server(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = references(html)
    assert "/openapi.json" in urls
    assert any(url.startswith("/docs/static/") and url.endswith(".js") for url in urls), urls
    assert foreign(urls, BASE + page) == []
    assert re.findall(r"(?:https?:)?//[\w.-]+", html) == [], "no absolute URL at all, not even one built by a script"
    assert "fonts.googleapis" not in html


@pytest.mark.parametrize("page", PAGES)
def test_what_the_pages_load_is_served_with_a_cache_header(client: TestClient, page: str) -> None:
    static = [url for url in references(client.get(page).text) if url.startswith("/docs/static/")]
    assert static
    for url in static:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=86400", url
        assert len(response.content) > 0
        if url.endswith(".css"):
            assert foreign(references(response.text), BASE + url) == [], url
        again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and again.headers["cache-control"] == "public, max-age=86400"
    assert client.get("/docs/static/swagger-ui/no-such-file.js").status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_policy_keeps_the_browser_on_this_server(client: TestClient, page: str) -> None:
    """The Content-Security-Policy stops what the bundles would fetch elsewhere on their own (ReDoc's logo comes
    from cdn.redoc.ly); the page's own inline scripts are allowed by their hash, so the policy does not break it."""
    response = client.get(page)
    policy = dict(
        (directive.split(" ", 1) + [""])[:2] for directive in response.headers["content-security-policy"].split("; ")
    )
    assert policy["default-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert "connect-src" not in policy and "font-src" not in policy  # both fall back to default-src 'self'
    allowed = set(policy["script-src"].split())
    assert "'unsafe-inline'" not in allowed and "'unsafe-eval'" not in allowed
    for script in re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in allowed
    assert all(not source.startswith(("http", "//")) for value in policy.values() for source in value.split())


def test_the_static_files_ship_in_the_wheel() -> None:
    """Every vendored file matches a ``[tool.setuptools.package-data]`` pattern of the ``server`` package."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["server"]
    shipped = {path for pattern in patterns for path in (REPO / "server").glob(pattern)}
    vendored = {path for path in STATIC_DIR.rglob("*") if path.is_file()}
    assert {path.name for path in vendored} >= {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"}
    assert vendored - shipped == set()


def test_openapi_names_the_bearer_token_on_every_protected_operation(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"][BEARER_SCHEME] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"][BEARER_SCHEME]["description"],
    }
    operations = {
        (method, path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "put", "post", "patch", "delete"}
    }
    assert PUBLIC_OPERATIONS <= operations.keys()
    for key, operation in operations.items():
        want = [] if key in PUBLIC_OPERATIONS else [{BEARER_SCHEME: []}]
        assert operation.get("security", []) == want, key


def test_a_post_with_only_a_bearer_token_needs_no_csrf_header(
    client: TestClient, session_factory: SessionFactory
) -> None:
    response = client.post(
        "/api/cases",
        json={"case_no": "(2026)苏0214执1号", "court": "无锡市新吴区人民法院"},
        headers=bearer(session_factory, "clerk"),
    )
    assert response.status_code == 201, response.text


def test_a_post_with_only_the_cookie_still_needs_the_csrf_header(client: TestClient) -> None:
    assert client.post("/api/auth/login", json={"username": "clerk", "password": PASSWORD}).status_code == 200
    refused = client.post("/api/cases", json={"case_no": "(2026)苏0214执2号", "court": "无锡市新吴区人民法院"})
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
    assert (
        client.post(
            "/api/cases", json={"case_no": "(2026)苏0214执2号", "court": "无锡市新吴区人民法院"}, headers=CSRF
        ).status_code
        == 201
    )


def test_from_the_docs_page_the_token_decides_whatever_cookie_comes_along(client: TestClient) -> None:
    """A browser that logged in holds the cookie and sends it with Swagger UI's calls too: a call with the token
    pasted into "Authorize" is judged by the token (no CSRF header needed), and a bad token is not rescued by the
    cookie."""
    login = client.post("/api/auth/login", json={"username": "clerk", "password": PASSWORD})
    token = login.json()["access_token"]
    assert client.cookies.get("seal_session")
    headers = {"Authorization": f"Bearer {token}"}
    with_token = client.post(
        "/api/cases", json={"case_no": "(2026)苏0214执3号", "court": "无锡市新吴区人民法院"}, headers=headers
    )
    assert with_token.status_code == 201, with_token.text
    bad_token = client.post(
        "/api/cases",
        json={"case_no": "(2026)苏0214执4号", "court": "无锡市新吴区人民法院"},
        headers={"Authorization": "Bearer nope"},
    )
    assert bad_token.status_code == 401
