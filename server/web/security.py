"""The pages' security headers and their CSRF rule.

Every page is sent with a strict Content-Security-Policy: scripts, styles, images and connections from this server
only, no inline script or style, no plug-ins, no framing, forms posted only here.

CSRF: a state-changing page request (POST) must prove it comes from our own pages, in one of two ways —
- htmx requests carry the header ``X-Requested-With`` (``hx-headers`` on ``<body>``), the API's rule: another site
  cannot add a header to a cross-site request without a CORS preflight, which this server never grants;
- a plain form carries the field ``csrf_token``: SHA-256 over a domain tag and the secret of an HttpOnly cookie —
  the session cookie when signed in, else the ``seal_csrf`` cookie the sign-in page sets — which another site can
  neither read nor compute. It changes with every sign-in.
Both cookies are ``SameSite=Strict`` too. Requests with a bearer token need neither (a browser never adds one).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-Requested-With"
PRE_SESSION_COOKIE = "seal_csrf"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; media-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


def csrf_token_for(secret: str) -> str:
    """The form token bound to a cookie's secret."""
    return hashlib.sha256(b"court-seal csrf\x00" + secret.encode("utf-8")).hexdigest()


def csrf_secret(request: Request, session_cookie: str) -> str | None:
    """The cookie secret the request's form token must be bound to: the session's, else the pre-session one."""
    return request.cookies.get(session_cookie) or request.cookies.get(PRE_SESSION_COOKIE)


def new_pre_session_secret() -> str:
    return secrets.token_urlsafe(32)


def set_pre_session_cookie(response: Response, secret: str, *, secure: bool) -> None:
    """The cookie a form's token is bound to before sign-in (the sign-in page sets it on the first visit)."""
    response.set_cookie(PRE_SESSION_COOKIE, secret, path="/", secure=secure, httponly=True, samesite="strict")


def csrf_ok(request: Request, form_token: str | None, session_cookie: str) -> bool:
    """Whether an unsafe request carries either proof of coming from our pages (see the module docstring)."""
    if request.headers.get(CSRF_HEADER):
        return True
    secret = csrf_secret(request, session_cookie)
    if not secret or not form_token:
        return False
    return hmac.compare_digest(
        csrf_token_for(secret).encode(), form_token.encode("utf-8", "replace")
    )  # any text: never a TypeError
