"""`make demo DEMO_SECONDS=N` — the README's first command — runs, prints the dashboard's URL first, its login lines
sign in on the sign-in page while it runs, it stops by itself, and leaves both cases' events."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from seal_dev.browser import chromium_path, launch, sign_in
from tests.agent.helpers import REPO

DEMO_CASES = {"(2021)苏0214执1234号", "(2022)苏0214执567号"}


def test_make_demo_stops_by_itself_with_intrusions_in_both_cases(tmp_path: Path) -> None:
    if chromium_path() is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh installs it): the sign-in check needs it")
    demo_dir = tmp_path / "demo"
    demo = subprocess.Popen(
        # 40 s from the banner: five sign-ins in Chromium (each an Argon2 check) on a loaded machine fit in it
        ["make", "-s", "demo", "DEMO_SECONDS=40", f"DEMO_DIR={demo_dir}"],
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
    signed_in = sign_in_on_the_page(banner, [line.split() for line in banner if line.startswith("login: ")])
    stdout, stderr = demo.communicate(timeout=240)
    stdout = "".join(banner) + stdout
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in demo_dir.glob("*.log"))
    assert demo.returncode == 0, stdout + stderr + logs
    urls = re.findall(r"http://127\.0\.0\.1:\d+\S*", stdout)
    assert urls and urls[0].endswith("/") and stdout.lstrip().startswith("dashboard: "), stdout
    assert "demo stopped" in stderr
    assert sorted(signed_in) == ["clerk", "creditor", "debtor", "judge", "officer"]

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
