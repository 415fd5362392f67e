"""``seal-server``: the commands the demo and court IT use, run in-process and (``run``) as a real process."""

from __future__ import annotations

import getpass
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from seal_dev.broker import PrivateBroker, free_port
from seal_protocol.signing import generate_signing_key, load_or_create_signing_key, public_key_b64
from server.audit.models import AuditEntry
from server.cli import main
from server.core.db import make_engine, make_session_factory
from server.migrations.run import current_revision, downgrade
from server.seals.broker_files import SERVER_USERNAME
from server.seals.models import Case, Seal

CASE = "(2021)苏0214执1234号"
#: 0030_case_held_until: the revision before 0031 gave the seals' rows their newest columns (storage_*).
BEFORE_SEALS_NEWEST_COLUMNS = "3f7b9e2c4a61"
VALID_KEY = public_key_b64(generate_signing_key())


def write_config(tmp_path: Path, database_url: str, *, mqtt_port: int = 1883, http_port: int = 8080) -> Path:
    password_file = tmp_path / "court-server.mqtt-password"
    if not password_file.exists():
        password_file.write_text("unused\n")
    for store in ("snapshots", "removal-proofs"):  # as `seal-server init` makes them
        (tmp_path / store).mkdir(exist_ok=True)
    path = tmp_path / "server.toml"
    path.write_text(
        f"""\
database_url = "{database_url}"
snapshot_dir = "{tmp_path / "snapshots"}"
offline_after_s = 180
[http]
host = "127.0.0.1"
port = {http_port}
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
username = "court-server"
password_file = "{password_file}"
tls_ca_file = ""
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = write_config(tmp_path, database_url)
    assert main(["init-db", "--config", str(path)]) == 0
    return path


def seals_and_cases(database_url: str) -> tuple[list[tuple[str, str | None, str, str]], list[tuple[str, str]]]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            seals = [(s.device_id, s.case_no, s.public_key, s.location) for s in session.scalars(select(Seal))]
            cases = [(c.case_no, c.court_name) for c in session.scalars(select(Case))]
            return seals, cases
    finally:
        engine.dispose()


def test_case_and_seal_registration(config: Path, database_url: str) -> None:
    key = public_key_b64(generate_signing_key())
    cfg = ["--config", str(config)]
    assert main(["case", "add", CASE, "--court", "无锡市滨湖区人民法院", "--judge", "王", *cfg]) == 0
    assert main(["seal", "add", "seal-01", "--case", CASE, "--public-key", key, "--location", "仓库", *cfg]) == 0

    seals, cases = seals_and_cases(database_url)
    assert cases == [(CASE, "无锡市滨湖区人民法院")]
    assert seals == [("seal-01", CASE, key, "仓库")]


def test_the_cli_adds_courts_and_cases_with_their_notice_fields(config: Path, database_url: str) -> None:
    cfg = ["--config", str(config)]
    assert main(["court", "add", "苏0214", "无锡市滨湖区人民法院", "--phone", "0510-85000000", *cfg]) == 0
    assert main(["court", "add", "苏0214", "无锡市滨湖区人民法院", *cfg]) == 1  # already there
    assert main(["case", "add", "(2021)苏0214民初1号", *cfg]) == 1  # not an enforcement case number
    args = [
        "case",
        "add",
        "（2021）苏0214执1234号",
        "--judge",
        "王法官",
        "--property",
        "101室",
        "--expires",
        "2027-12-31",
    ]
    assert main([*args, *cfg]) == 0
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            case = session.scalars(select(Case)).one()
            assert (case.case_no, case.court_name, case.sealed_property, str(case.seizure_expires_on)) == (
                "(2021)苏0214执1234号",
                "无锡市滨湖区人民法院",
                "101室",
                "2027-12-31",
            )
    finally:
        engine.dispose()


def test_rebinding_keeps_the_key_unless_told(config: Path, database_url: str) -> None:
    key, other_key = public_key_b64(generate_signing_key()), public_key_b64(generate_signing_key())
    cfg = ["--config", str(config)]
    assert main(["case", "add", CASE, "--court", "无锡市滨湖区人民法院", *cfg]) == 0
    assert main(["case", "add", "(2022)苏0214执9号", *cfg]) == 0
    assert main(["seal", "add", "seal-01", "--case", CASE, "--public-key", key, *cfg]) == 0

    assert main(["seal", "add", "seal-01", "--case", "(2022)苏0214执9号", "--public-key", key, *cfg]) == 0
    assert seals_and_cases(database_url)[0][0][1] == "(2022)苏0214执9号"
    assert main(["seal", "add", "seal-01", "--case", CASE, "--public-key", other_key, *cfg]) == 1
    assert seals_and_cases(database_url)[0][0][2] == key
    assert main(["seal", "add", "seal-01", "--case", CASE, "--public-key", other_key, "--replace-key", *cfg]) == 0
    assert seals_and_cases(database_url)[0][0][1:3] == (CASE, other_key)


@pytest.mark.parametrize(
    "args",
    [
        ["case", "add", CASE],  # the second time
        ["seal", "add", "seal-01", "--case", "(1999)无此案号", "--public-key", VALID_KEY],
        ["seal", "add", "seal-01", "--case", CASE, "--public-key", "not base64!"],
        ["seal", "add", "Bad Id", "--case", CASE, "--public-key", VALID_KEY],
        ["seal", "add", "seal-01", "--case", CASE, "--public-key", "AAAA"],
    ],
)
def test_refusals_exit_1(config: Path, database_url: str, args: list[str]) -> None:
    assert main(["case", "add", CASE, "--court", "无锡市滨湖区人民法院", "--config", str(config)]) == 0
    assert main([*args, "--config", str(config)]) == 1
    assert seals_and_cases(database_url)[0] == []


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("database_url = 3\n")
    assert main(["check-config", "--config", str(path)]) == 2
    assert main(["init-db", "--config", str(tmp_path / "absent.toml")]) == 2


def test_json_log_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--log-format", "json", "--config", str(tmp_path / "absent.toml")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and "not found" in entry["message"]
    assert set(entry) == {"ts", "level", "logger", "message"}  # the agent's lines have the same keys and form
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["ts"]), entry["ts"]


def test_log_flags_before_or_after_the_command_in_any_case(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Spelled like the agent's: ``--log-level LEVEL`` (any case) and ``--log-format text|json``, on either side."""
    absent = str(config.parent / "absent.toml")
    for args in (
        ["--log-level", "debug", "--log-format", "json", "check-config", "--config", absent],
        ["check-config", "--config", absent, "--log-level", "Debug", "--log-format", "json"],
        ["--log-level", "error", "--log-format", "text", "check-config", "--log-format", "json", "--config", absent],
    ):
        assert main(args) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert json.loads(line)["level"] == "ERROR"  # json was asked for, before or after the command
    assert main(["--log-level", "warning", "check-config", "--config", str(config)]) == 0
    # A nested command takes them on either side too (0 or 1: parsed, whatever the database says).
    assert main(["--log-level", "ERROR", "case", "add", CASE, "--config", str(config), "--log-level", "info"]) in (0, 1)
    for wrong in (["--log-level", "verbose"], ["--log-format", "xml"]):
        with pytest.raises(SystemExit) as usage:
            main([*wrong, "check-config", "--config", str(config)])
        assert usage.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["check-config", "--help"])
    help_text = capsys.readouterr().out
    assert "--log-level LEVEL" in help_text and "--log-format FORMAT" in help_text and "--config FILE" in help_text
    assert "debug, info, warning or error (default info)" in help_text


def test_check_config(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(config)]) == 0
    assert "ok" in capsys.readouterr().out


def test_run_serves_the_api_and_ingests(tmp_path: Path, broker: PrivateBroker) -> None:
    """`seal-server run` as a real process: health answers, with the broker connected."""
    database_url = f"sqlite:///{tmp_path / 'court.db'}"
    (tmp_path / "court-server.mqtt-password").write_text(broker.users[SERVER_USERNAME] + "\n")
    port = free_port()
    path = write_config(tmp_path, database_url, mqtt_port=broker.port, http_port=port)
    load_or_create_signing_key(tmp_path / "court-command.key")  # the key that signs receipts (and commands)
    with path.open("a", encoding="utf-8") as config_file:
        config_file.write(f'[commands]\nsigning_key_file = "{tmp_path / "court-command.key"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).json()
                if (health["broker"], health["feed"]) == ("connected", "subscribed"):  # the two connect apart
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert health is not None
        assert (health["status"], health["broker"], health["db"], health["ingest"]) == ("ok", "connected", "ok", "ok")
        # A client on this machine (as a local reverse proxy would be) cannot choose its address with a header:
        # with no [http] trusted_proxies, its forwarding headers are ignored (the socket's peer is the address
        # throttled), and the log says the proxy is not configured.
        login = f"http://127.0.0.1:{port}/api/auth/login"
        body = {"username": "nobody", "password": "wrong-password-123"}
        spoofed = httpx.post(
            login, json=body, headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"}, timeout=5
        )
        assert spoofed.status_code == 401 and "trusted_proxies" not in spoofed.text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert f"http://127.0.0.1:{port}" in text
    assert process.returncode == 0, text
    with sqlite3.connect(tmp_path / "court.db") as db:
        failed = db.execute("SELECT actor, details FROM audit_log WHERE action = 'login.failed'").fetchall()
        addresses = [row[0] for row in db.execute("SELECT client_ip FROM login_failures")]
    assert failed == []  # "nobody" names no account: the caller's text stays out of the evidence log
    assert addresses == ["127.0.0.1"]
    assert "REVERSE PROXY NOT CONFIGURED: a request from 127.0.0.1" in text


def test_notification_targets_on_the_command_line(
    config: Path, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(config)]
    assert main(["case", "add", CASE, "--court", "无锡市滨湖区人民法院", *cfg]) == 0
    secret = tmp_path / "creditor.secret"
    secret.write_text("creditor-secret-0123456789\n")
    add = ["notify", "add-target", "--case", CASE]
    # No key of its own and no global one: refused now, rather than failed at every delivery.
    assert main([*add, "--role", "judge", "--url", "https://court.example/hook", *cfg]) == 1
    assert "needs a secret" in capsys.readouterr().err
    global_secret = tmp_path / "webhook-secret"
    with config.open("a", encoding="utf-8") as fh:
        fh.write(f'[notify]\nwebhook_secret_file = "{global_secret}"\n')
    # A global secret file that is named but does not exist (or is empty) signs nothing either: refused now.
    assert main([*add, "--role", "judge", "--url", "https://court.example/hook", *cfg]) == 1
    assert "needs a secret" in capsys.readouterr().err
    global_secret.write_text("\n")
    assert main([*add, "--role", "judge", "--url", "https://court.example/hook", *cfg]) == 1
    global_secret.write_text("global-secret-0123456789\n")
    assert main([*add, "--role", "judge", "--url", "https://court.example/hook", *cfg]) == 0
    creditor_hook = ["--url", "https://bank.example/hook", "--secret-file", str(secret)]
    assert main([*add, "--role", "creditor", *creditor_hook, "--actor", "clerk-li", *cfg]) == 0
    assert main([*add, "--role", "judge", "--url", "https://court.example/hook", *cfg]) == 1  # already there
    assert main([*add, "--role", "judge", "--url", "ftp://court.example", *cfg]) == 1
    assert (
        main([*add, "--role", "judge", "--url", "https://x.example", "--secret-file", str(tmp_path / "none"), *cfg])
        == 2
    )
    capsys.readouterr()

    assert main(["notify", "list", *cfg]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1:] for line in listed] == [
        [CASE, "judge", "https://court.example/hook", "global key"],
        [CASE, "creditor", "https://bank.example/hook", "own key"],
    ]
    assert "creditor-secret" not in "".join(listed)
    judge_id = listed[0].split("\t")[0]
    assert main(["notify", "remove", judge_id, *cfg]) == 0
    assert main(["notify", "remove", judge_id, *cfg]) == 1
    capsys.readouterr()
    assert main(["notify", "list", "--case", CASE, *cfg]) == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == ["creditor"]

    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            query = select(AuditEntry).where(AuditEntry.action.like("notify.%"))
            audit = session.scalars(query.order_by(AuditEntry.id))
            judge = {"case_no": CASE, "role": "judge", "url": "https://court.example/hook", "has_secret": False}
            creditor = {"case_no": CASE, "role": "creditor", "url": "https://bank.example/hook", "has_secret": True}
            # the same details as through the API (server.notify.targets.target_audit_details)
            assert [(e.actor, e.action, e.details) for e in audit] == [
                (f"cli:{getpass.getuser()}", "notify.add_target", judge),  # the OS user who ran the command
                ("cli:clerk-li", "notify.add_target", creditor),  # --actor
                (f"cli:{getpass.getuser()}", "notify.remove_target", judge),
            ]
    finally:
        engine.dispose()


def test_a_short_command_against_a_schema_behind_says_to_run_init_db(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``seal add`` reads the seals' rows, whose newest columns a schema behind lacks (``init-db`` not run after an
    upgrade): exit 2 and the words of ``seal-server ingest``'s refusal, not "database error: no such column"."""
    cfg = ["--config", str(config)]
    assert main(["case", "add", CASE, "--court", "无锡市滨湖区人民法院", "--judge", "王", *cfg]) == 0
    engine = make_engine(database_url)
    try:
        head = current_revision(engine)
        downgrade(engine, BEFORE_SEALS_NEWEST_COLUMNS)
        behind = current_revision(engine)
    finally:
        engine.dispose()
    capsys.readouterr()

    code = main(
        ["seal", "add", "seal-01", "--case", CASE, "--public-key", public_key_b64(generate_signing_key()), *cfg]
    )

    err = capsys.readouterr().err
    assert code == 2, err
    said = f"数据库结构落后于本版本（{behind}，本版本需要 {head}）：请先运行 seal-server init-db"
    assert said in err and "database error" not in err, err
