"""Debian's chromium driven by Playwright's Python API, for the page tests and the dashboard bench.

``playwright install`` cannot download browsers here: the browser is the system's (``apt-get install chromium``,
which scripts/setup.sh does), launched with ``executable_path``. :class:`PageWatch` records what a page did that a
test must see: every request (and its host), console errors, uncaught errors.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request

#: The chromium flags of a headless run on a server without a sandbox, a GPU or background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str | None:
    """The system's chromium, or ``None`` if it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright: Playwright) -> Browser:
    path = chromium_path()
    if path is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium; scripts/setup.sh does)")
    return playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)


@dataclass
class PageWatch:
    """What ``page`` requested and complained of, from the moment it is watched."""

    page: Page
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("request", self._request)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def foreign_hosts(self, allowed: str) -> set[str]:
        """Hosts other than ``allowed`` (``127.0.0.1:8080``) that the page sent a request to."""
        hosts = {urlsplit(url).netloc for url in self.requests if not url.startswith(("data:", "blob:", "about:"))}
        return hosts - {allowed}


def sign_in(page: Page, base_url: str, username: str, password: str) -> None:
    """Sign in through the sign-in page, as a person would, and wait for the overview (a debtor's: the portal)."""
    page.goto(f"{base_url}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(lambda url: url in (f"{base_url}/", f"{base_url}/portal"))
