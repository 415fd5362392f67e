"""`make demo DEMO_SECONDS=N` — the README's first command — runs, prints the dashboard's URL first, its login lines
sign in on the sign-in page while it runs, the notice it names prints with a QR code that verifies on the same
server, it stops by itself, and leaves both cases' events."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from seal_dev.browser import chromium_path, launch, sign_in
from tests.agent.helpers import REPO
from tests.server.test_notices import AUTHENTIC, qr_text

DEMO_CASES = {"(2021)苏0214执1234号", "(2022)苏0214执567号"}


def test_make_demo_stops_by_itself_with_intrusions_in_both_cases(tmp_path: Path) -> None:
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it): the sign-in check needs it")
    demo_dir = tmp_path / "demo"
    demo = subprocess.Popen(
        # 50 s from the banner: a notice printed and read back, and five sign-ins in Chromium (each an Argon2
        # check) on a loaded machine fit in it
        ["make", "-s", "demo", "DEMO_SECONDS=50", f"DEMO_DIR={demo_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    banner: list[str] = []
    for line in demo.stdout:  # the banner, printed once the server and the seals run
        banner.append(line)
        if line.startswith("  Ctrl-C"):
            break
    if not banner:  # it ended before its banner: say why
        assert demo.stderr is not None
        pytest.fail(f"the demo ended before its banner (code {demo.wait(timeout=60)}):\n{demo.stderr.read()}")
    logins = [line.split() for line in banner if line.startswith("login: ")]
    notice = print_the_notice_named(banner, logins, tmp_path)
    signed_in = sign_in_on_the_page(banner, logins)
    stdout, stderr = demo.communicate(timeout=240)
    stdout = "".join(banner) + stdout
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in demo_dir.glob("*.log"))
    assert demo.returncode == 0, stdout + stderr + logs
    urls = re.findall(r"http://127\.0\.0\.1:\d+\S*", stdout)
    assert urls and urls[0].endswith("/") and stdout.lstrip().startswith("dashboard: "), stdout
    assert "demo stopped" in stderr
    assert sorted(signed_in) == ["clerk", "creditor", "debtor", "judge", "officer"]
    assert notice["authentic"] is True and notice["reason"] is None, notice

    logins = [line.split() for line in stdout.splitlines() if line.startswith("login: ")]
    assert sorted(fields[1] for fields in logins) == ["clerk", "creditor", "debtor", "judge", "officer"]
    assert all(len(fields) == 4 and len(fields[3]) >= 12 for fields in logins), logins

    with sqlite3.connect(demo_dir / "court.db") as db:
        rows = db.execute("SELECT case_no, device_id, type FROM events").fetchall()
        users = dict(db.execute("SELECT username, password_hash FROM users").fetchall())
    for _login, _role, username, password in logins:
        assert users[username].startswith("$argon2") and password not in users[username]
    intrusions = {case_no for case_no, _device, kind in rows if kind == "intrusion"}
    assert intrusions == DEMO_CASES, rows
    devices_per_case = {case: {d for c, d, _ in rows if c == case} for case in DEMO_CASES}
    assert all(len(devices) == 1 for devices in devices_per_case.values()), devices_per_case

    # No child outlived the demo: the broker's port is free again and no agent holds its outbox lock.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(demo_dir) not in ps, ps


def sign_in_on_the_page(banner: list[str], logins: list[list[str]]) -> list[str]:
    """Sign in on the dashboard's sign-in page, in Chromium, with each ``login: <role> <username> <password>`` line
    (the demo's cookies are ``Secure``: a browser keeps them for http://127.0.0.1, which it counts as secure);
    the roles that reached the overview."""
    [dashboard] = [line.split()[1] for line in banner if line.startswith("dashboard: ")]
    base = dashboard.rstrip("/")
    roles = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        for _login, role, username, password in logins:
            page = browser.new_context().new_page()
            sign_in(page, base, username, password)
            heading = page.locator("h1").inner_text()
            assert ("总览" in heading) if role != "debtor" else page.url.endswith("/portal"), (role, heading)
            roles.append(role)
        browser.close()
    return roles


def print_the_notice_named(banner: list[str], logins: list[list[str]], tmp_path: Path) -> dict[str, object]:
    """Print the notice the banner's ``notice:`` line names, as the judge, and read its QR code as a phone would: it
    opens this server's public page, which says the notice is authentic; the public verdict of its token."""
    [dashboard] = [line.split()[1] for line in banner if line.startswith("dashboard: ")]
    [notice_url] = [line.split()[1] for line in banner if line.startswith("  notice: ")]
    [(username, password)] = [(fields[2], fields[3]) for fields in logins if fields[1] == "judge"]
    base = dashboard.rstrip("/")
    assert notice_url.startswith(base + "/api/seals/"), notice_url
    with httpx.Client(base_url=base, timeout=30) as http:
        signed_in = http.post("/api/auth/login", json={"username": username, "password": password})
        assert signed_in.status_code == 200, signed_in.text
        token = signed_in.json()["access_token"]
        pdf = http.get(notice_url, headers={"Authorization": f"Bearer {token}"})
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf", pdf.text[:500]
        opened = qr_text(pdf.content, tmp_path)
        assert opened.startswith(base + "/notice/"), opened  # the address the demo serves, its port included
        page = http.get(opened.removeprefix(base))
        assert page.status_code == 200 and AUTHENTIC in page.text, page.text[:500]
        verdict = http.get("/api/notices/verify", params={"token": opened.removeprefix(base + "/notice/")})
        assert verdict.status_code == 200, verdict.text
        answer: dict[str, object] = verdict.json()
        return answer
