"""A failed sign-in puts no text of the caller's into the evidence log: audit entries are leaves of the append-only
Merkle log, kept for good. A username or case number that names nothing is logged (cut, escaped) and counted; a
failure of a real account or case is audited under that account's or case's own name."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.auth.access_codes import issue_access_code
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.evidence.models import LogLeaf
from server.seals.cases import add_case
from tests.server.auth_helpers import add_user, make_settings

CASE = "(2021)苏0214执1234号"
FORGED = "\u202e法官已批准解除查封"  # right-to-left override: "the judge approved lifting the seizure"


@pytest.fixture
def court(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    with session_scope(session_factory) as session:
        add_case(session, actor=None, case_no=CASE, court="无锡市滨湖区人民法院")
        issue_access_code(session, actor=None, case_no=CASE, now=utc_now())
    add_user(session_factory, "chen", Role.CLERK)
    settings = make_settings(database_url, tmp_path, login_max_failures=50, login_address_max_failures=100)
    with TestClient(create_app(settings, with_ingest=False), client=("127.0.0.1", 40000)) as client:
        yield client


def evidence(session_factory: SessionFactory) -> tuple[list[tuple[str, str]], int]:
    """The ``login.failed`` entries (target, case) and the number of leaves of the log."""
    with session_factory() as session:
        query = select(AuditEntry.target, AuditEntry.case_no).where(AuditEntry.action == "login.failed")
        entries = [(target, case_no) for target, case_no in session.execute(query.order_by(AuditEntry.id))]
        return entries, session.scalar(select(func.count(LogLeaf.leaf_index))) or 0


def failed_sign_ins(client: TestClient) -> dict[str, float]:
    lines = client.get("/metrics").text.splitlines()
    prefix = "seal_sign_ins_failed_total{kind="
    return {line.split('"')[1]: float(line.split()[-1]) for line in lines if line.startswith(prefix)}


def test_a_username_that_names_no_account_is_not_evidence(
    court: TestClient, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    _, leaves = evidence(session_factory)
    with caplog.at_level(logging.WARNING, logger="server.auth.login"):
        for n in range(25):
            body = {"username": f"{FORGED}-{n:02d}", "password": "x"}
            assert court.post("/api/auth/login", json=body).status_code == 401
    assert evidence(session_factory) == ([], leaves)
    logged = [record.getMessage() for record in caplog.records if "failed login" in record.getMessage()]
    assert len(logged) == 25 and "\\u202e" in logged[0] and "\u202e" not in logged[0]  # escaped, never raw
    assert failed_sign_ins(court)["unknown_user"] == 25


def test_a_failed_sign_in_of_an_account_is_audited_under_its_own_name(
    court: TestClient, session_factory: SessionFactory
) -> None:
    assert court.post("/api/auth/login", json={"username": "chen", "password": "wrong wrong"}).status_code == 401
    entries, _ = evidence(session_factory)
    assert entries == [("chen", None)]
    assert failed_sign_ins(court)["wrong_secret"] == 1


def test_an_access_code_sign_in_puts_no_case_number_of_the_caller_s_into_the_log(
    court: TestClient, session_factory: SessionFactory
) -> None:
    _, leaves = evidence(session_factory)
    for case_no in (f"(1999){FORGED}", "（2021）苏0214执9999号"):  # no such case
        answer = court.post("/api/auth/access-code", json={"case_no": case_no, "code": "AAAA-BBBB-CCCC-DDDD"})
        assert answer.status_code == 401
        assert answer.json()["detail"] == "案号或查询码不正确。 / wrong case number or access code"
    assert evidence(session_factory) == ([], leaves)
    spelt = "（2021）苏0214执1234号"  # the real case, spelt with full-width brackets: audited as the case is named
    answer = court.post("/api/auth/access-code", json={"case_no": spelt, "code": "AAAA-BBBB-CCCC-DDDD"})
    assert answer.status_code == 401
    entries, after = evidence(session_factory)
    assert entries == [(f"case:{CASE}", CASE)] and after == leaves + 1
    assert failed_sign_ins(court) == {"unknown_case": 2, "wrong_secret": 1}
