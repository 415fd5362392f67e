"""`make demo DEMO_SECONDS=N` — the README's first command — runs, stops by itself, and leaves both cases' events."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from tests.agent.helpers import REPO

DEMO_CASES = {"(2021)苏0214执1234号", "(2022)苏0214执567号"}


def test_make_demo_stops_by_itself_with_intrusions_in_both_cases(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    result = subprocess.run(
        ["make", "-s", "demo", "DEMO_SECONDS=20", f"DEMO_DIR={demo_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in demo_dir.glob("*.log"))
    assert result.returncode == 0, result.stdout + result.stderr + logs
    assert "http://127.0.0.1:" in result.stdout and "demo stopped" in result.stderr

    logins = [line.split() for line in result.stdout.splitlines() if line.startswith("login: ")]
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
