"""``seal-server user …``: accounts made on the command line, passwords from stdin or a prompt."""

from __future__ import annotations

import getpass
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.models import User
from server.auth.passwords import verify_password
from server.auth.users import assigned_case_nos, get_user
from server.cli import main
from server.core.db import make_engine, make_session_factory
from tests.server.test_cli import write_config

OS_USER = f"cli:{getpass.getuser()}"  # the actor of the audit entries of a command run by this user

CASE = "(2021)苏0214执1234号"
GOOD = "a long enough password"


@pytest.fixture
def config(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = write_config(tmp_path, database_url)
    assert main(["init-db", "--config", str(path)]) == 0
    assert main(["case", "add", CASE, "--court", "无锡市新吴区人民法院", "--config", str(path)]) == 0
    return path


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def read_user(database_url: str, username: str) -> tuple[str, str, list[str]]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            user = get_user(session, username=username)
            return user.role, user.password_hash, assigned_case_nos(session, user=user)
    finally:
        engine.dispose()


def test_user_add_with_password_on_stdin(config: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin(monkeypatch, GOOD + "\n")
    cfg = ["--config", str(config)]
    assert main(["user", "add", "wang", "--role", "judge", "--case", CASE, "--password-stdin", *cfg]) == 0
    role, password_hash, cases = read_user(database_url, "wang")
    assert (role, cases) == ("judge", [CASE])
    assert GOOD not in password_hash and verify_password(password_hash, GOOD)
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "user.create"))
            expected = (OS_USER, "wang", {"role": "judge", "case_nos": [CASE]})
            assert (entry.actor, entry.target, entry.details) == expected
            [assigned] = session.scalars(select(AuditEntry).where(AuditEntry.action == "case.assign"))
            assert (assigned.case_no, assigned.details) == (CASE, {"username": "wang"})  # in the case's entries
    finally:
        engine.dispose()


def test_user_add_with_a_prompt(config: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([GOOD, GOOD])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["user", "add", "li", "--role", "clerk", "--config", str(config)]) == 0
    assert read_user(database_url, "li")[0] == "clerk"


def test_prompted_passwords_must_match(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([GOOD, GOOD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["user", "add", "li", "--role", "clerk", "--config", str(config)]) == 1


@pytest.mark.parametrize(
    ("args", "password"),
    [
        (["user", "add", "wang", "--role", "judge", "--password-stdin"], "short pw\n"),  # < 12 characters
        (["user", "add", "wang", "--role", "judge", "--password-stdin"], "\n"),
        (["user", "add", "Wang Fa", "--role", "judge", "--password-stdin"], GOOD + "\n"),  # bad username
        (["user", "add", "wang", "--role", "judge", "--case", "(1999)无此案号", "--password-stdin"], GOOD + "\n"),
        (["user", "add", "wang", "--role", "clerk", "--case", CASE, "--password-stdin"], GOOD + "\n"),
    ],
)
def test_refusals_leave_no_user(
    config: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, args: list[str], password: str
) -> None:
    stdin(monkeypatch, password)
    assert main([*args, "--config", str(config)]) == 1
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            assert session.scalars(select(User)).all() == []
    finally:
        engine.dispose()


def test_user_list_and_assign(
    config: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(config)]
    stdin(monkeypatch, GOOD + "\n")
    assert main(["user", "add", "zhao", "--role", "officer", "--password-stdin", *cfg]) == 0
    assert main(["case", "add", "(2022)苏0214执9号", *cfg]) == 0
    assert main(["user", "assign", "zhao", "--case", "(2022)苏0214执9号", *cfg]) == 0
    assert main(["user", "assign", "zhao", "--case", "(2022)苏0214执9号", *cfg]) == 1  # twice
    assert main(["user", "assign", "nobody", "--case", CASE, *cfg]) == 1
    capsys.readouterr()
    assert main(["user", "list", *cfg]) == 0
    assert capsys.readouterr().out.splitlines() == ["zhao\tofficer\t\t(2022)苏0214执9号"]
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            [entry] = session.scalars(select(AuditEntry).where(AuditEntry.action == "case.assign"))
            # the same details as `POST /api/cases/{case_no}/assignments`
            assert (entry.actor, entry.target, entry.details) == (OS_USER, "(2022)苏0214执9号", {"username": "zhao"})
    finally:
        engine.dispose()
