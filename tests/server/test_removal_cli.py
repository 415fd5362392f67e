"""``seal-server removal …``: the clerk issues (and rotates) the debtor's access code on the command line, and reads
the requests; the codes it prints sign the debtor in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seal_protocol.signing import generate_signing_key, public_key_b64
from server.auth.access_codes import code_matches, find_code
from server.auth.users import get_user
from server.cli import main
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import make_engine, make_session_factory, session_scope
from server.removal.grounds import RemovalGround
from server.removal.proofs import ProofStore, check_proof
from server.removal.service import file_request
from tests.server.auth_helpers import add_user
from tests.server.removal_world import pdf_bytes
from tests.server.test_cli import CASE, config  # noqa: F401 - the fixture, and its case number


def printed_code(out: str) -> str:
    match = re.search(r"Access code: ([A-Z0-9-]{19})$", out, re.MULTILINE)
    assert match is not None, out
    return match.group(1)


def test_access_code_and_requests_on_the_command_line(
    config: Path,  # noqa: F811 - the fixture imported above
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = ["--config", str(config)]
    assert main(["case", "add", CASE, "--court", "无锡市滨湖区人民法院", *cfg]) == 0
    assert (
        main(["seal", "add", "seal-01", "--case", CASE, "--public-key", public_key_b64(generate_signing_key()), *cfg])
        == 0
    )
    capsys.readouterr()
    assert main(["removal", "access-code", CASE, *cfg]) == 0
    first = printed_code(capsys.readouterr().out)
    assert main(["removal", "access-code", CASE, *cfg]) == 1  # a code exists: replaced only with --rotate
    assert "rotate" in capsys.readouterr().err
    assert main(["removal", "access-code", CASE, "--rotate", *cfg]) == 0
    rotated = capsys.readouterr().out
    assert "rotated" in rotated and printed_code(rotated) != first
    assert main(["removal", "access-code", "(1999)无此案号", *cfg]) == 1

    engine = make_engine(database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            row = find_code(session, case_no=CASE)
        assert code_matches(row, printed_code(rotated)) and not code_matches(row, first)
        add_user(factory, "debtor", "debtor", [CASE])  # type: ignore[arg-type]
        with session_scope(factory) as session:
            receipt = check_proof(pdf_bytes(), filename="回单.pdf", declared_type="", max_bytes=2**20)
            request = file_request(
                session,
                actor=get_user(session, username="debtor"),
                case_no=CASE,
                ground=RemovalGround.PAID_IN_FULL,
                statement="已清偿\x1b[2J",
                proofs=[receipt],
                store=ProofStore(tmp_path / "removal-proofs"),
                settings=RemovalSettings(),
                now=utc_now(),
            )
            request_id = request.id
    finally:
        engine.dispose()
    capsys.readouterr()
    assert main(["removal", "list", "--open", *cfg]) == 0
    assert capsys.readouterr().out.split("\t")[:4] == [str(request_id), CASE, "submitted", "paid_in_full"]
    assert main(["removal", "show", str(request_id), *cfg]) == 0
    shown = capsys.readouterr().out
    assert "债务已经清偿" in shown and "debtor file: - -> submitted" in shown
    assert "\x1b" not in shown  # what a party wrote cannot rewrite the clerk's terminal
    assert main(["removal", "show", "999", *cfg]) == 1
