"""Rendering pages: one Jinja2 environment over ``server/web/templates`` (autoescaped, undefined names are errors).

Every template sees ``t`` (the :class:`~server.web.i18n.Translator` of the page's language), ``lang``, ``static``
(the versioned URL of a static file), ``csrf_token`` and ``user`` (``None`` on the sign-in page), and ``live_url``
(the page's live stream, or ``None``): :class:`~server.web.deps.Page` passes them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from server.auth.users import is_code_account
from server.web.form_ids import command_form_id
from server.web.security import PAGE_HEADERS
from server.web.static import static_url


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("server.web", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_no_none,
    )
    env.globals["static"] = static_url
    env.globals["command_form_id"] = command_form_id  # a command form's one-use id (server.web.form_ids)
    env.globals["is_code_account"] = is_code_account  # base.html: no password link for an access-code account
    return env


def _no_none(value: Any) -> Any:
    """What ``{{ … }}`` prints: a missing value (``None``) prints nothing, never the word "None" on a page (a
    template that must say "not recorded" says so itself)."""
    return "" if value is None else value


def render_text(name: str, context: dict[str, Any]) -> str:
    """A template (or a fragment of one) as text: what a page and a live stream's messages are made of."""
    return environment().get_template(name).render(context)


def html_response(text: str, status_code: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    """A page with the pages' security headers (:data:`~server.web.security.PAGE_HEADERS`)."""
    return HTMLResponse(text, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})
