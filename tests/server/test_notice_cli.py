"""``seal-server notice`` and ``notice-key`` on the command line, and the verifier that docs/notice.md gives third
parties, run against a token the server printed."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from nacl.exceptions import BadSignatureError

from seal_protocol.signing import generate_signing_key, load_or_create_signing_key, public_key_b64
from server.cli import main
from server.core.db import make_engine, make_session_factory, session_scope
from server.notices.facts import NoticeFacts
from server.notices.keys import key_id
from server.notices.models import Notice
from server.notices.token import NoticeClaims, b64url, b64url_decode, canonical_json, sign_token
from server.seals.cases import add_case, add_court, update_case
from server.seals.registry import register_seal
from tests.server.helpers import COURT_CODE, COURT_NAME, COURT_PHONE, notice_facts

CASE = "(2021)苏0214执1234号"
REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, database_url: str, *, public_base_url: str) -> Path:
    (tmp_path / "mqtt-password").write_text("unused\n")
    path = tmp_path / "server.toml"
    for store in ("snapshots", "removal-proofs"):  # the stores' directories, as `seal-server init` makes them
        (tmp_path / store).mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""\
database_url = "{database_url}"
snapshot_dir = "{tmp_path / "snapshots"}"
[mqtt]
password_file = "{tmp_path / "mqtt-password"}"
[notices]
key_file = "{tmp_path / "notice.key"}"
public_base_url = "{public_base_url}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = write_config(tmp_path, database_url, public_base_url="https://seal.court.example")
    assert main(["init-db", "--config", str(path)]) == 0
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            add_court(session, actor=None, code=COURT_CODE, name=COURT_NAME, phone=COURT_PHONE)
            add_case(session, actor=None, case_no=CASE, judge="张法官", **notice_facts(CASE))
            for device_id in ("seal-0001", "seal-0002"):
                key = public_key_b64(generate_signing_key())
                register_seal(session, actor=None, device_id=device_id, case_no=CASE, public_key=key)
    finally:
        engine.dispose()
    return path


def test_notice_writes_the_pdf_and_prints_its_url(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = config.parent / "notice.pdf"
    args = ["notice", "seal-0001", "-o", str(out), "--config", str(config)]
    assert main(args) == 2  # no notice key yet
    assert "seal-server notice-key" in capsys.readouterr().err
    assert main(["notice-key", "--config", str(config)]) == 0
    public_key = capsys.readouterr().out.strip()

    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0].startswith(f"wrote {out}: new notice 1 of case {CASE}")
    assert first[1].startswith("https://seal.court.example/notice/")
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, check=True).stdout.decode()
    assert CASE in re.sub(r"\s+", "", text)
    assert main(args) == 0
    assert "notice printed again 1" in capsys.readouterr().out

    claims = verify_with_the_documented_code(first[1].rsplit("/", 1)[1], public_key)
    assert (claims["n"], claims["d"], claims["c"]) == (1, "seal-0001", CASE)

    assert main(["notice", "no-such-seal", "-o", str(out), "--config", str(config)]) == 1


def test_notice_refuses_without_a_public_address(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    load_or_create_signing_key(config.parent / "notice.key")
    write_config(config.parent, database_url, public_base_url="")
    assert main(["notice", "seal-0002", "-o", str(config.parent / "n.pdf"), "--config", str(config)]) == 2
    assert "public_base_url" in capsys.readouterr().err
    assert not (config.parent / "n.pdf").exists()


def verify_with_the_documented_code(token: str, public_key: str) -> dict[str, object]:
    """Run the Python verifier printed in docs/notice.md, as a third party would copy it."""
    doc = (REPO / "docs" / "notice.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", doc, re.DOTALL)
    assert code is not None
    namespace: dict[str, object] = {}
    exec(code.group(1), namespace)
    verify = namespace["verify_notice_token"]
    assert callable(verify)
    claims = verify(token, public_key)
    assert isinstance(claims, dict)
    return claims


def test_the_documented_verifier_refuses_what_the_server_refuses() -> None:
    key = generate_signing_key()
    facts = NoticeFacts("法院", "", CASE, "", "", "2026-12-04", "", "", None, "seal-0001")
    now = datetime.now(UTC).replace(microsecond=0)
    claims = NoticeClaims(1, "seal-0001", CASE, now, now + timedelta(days=1), facts.sha256(), key_id(key.verify_key))
    token = sign_token(claims, key)
    assert verify_with_the_documented_code(token, public_key_b64(key))["n"] == 1
    with pytest.raises(AssertionError, match="another key"):
        verify_with_the_documented_code(token, public_key_b64(generate_signing_key()))
    payload, signature = token.split(".")
    members = json.loads(b64url_decode(payload))
    longer = b64url(canonical_json({**members, "x": members["x"] + 86400 * 3650}))
    with pytest.raises(BadSignatureError):
        verify_with_the_documented_code(f"{longer}.{signature}", public_key_b64(key))
    expired = NoticeClaims(
        1, "seal-0001", CASE, now - timedelta(days=2), now - timedelta(days=1), facts.sha256(), key_id(key.verify_key)
    )
    with pytest.raises(AssertionError, match="expired"):
        verify_with_the_documented_code(sign_token(expired, key), public_key_b64(key))


def test_notice_revoke_says_why(config: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["notice-key", "--config", str(config)]) == 0
    out = config.parent / "notice.pdf"
    assert main(["notice", "seal-0001", "-o", str(out), "--config", str(config)]) == 0
    capsys.readouterr()
    assert main(["notice-revoke", "1", "--note", "公告张贴位置有误，重新张贴", "--config", str(config)]) == 0
    assert "notice 1 of seal seal-0001" in capsys.readouterr().out
    assert main(["notice-revoke", "1", "--note", "again", "--config", str(config)]) == 1  # revoked already
    assert main(["notice-revoke", "99", "--note", "x", "--config", str(config)]) == 1
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            notice = session.get(Notice, 1)
            assert notice is not None
            assert (notice.revoked_reason, notice.revoked_note) == ("revoked", "公告张贴位置有误，重新张贴")
    finally:
        engine.dispose()


def test_notice_says_the_last_day_the_pdf_prints(
    config: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The notice expires as the court's day after the seizure's term begins (midnight, UTC+8): the command said
    "valid until" the next day's date, in UTC, while the paper says 查封期限至 the term's last day."""
    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            update_case(session, actor=None, case_no=CASE, changes={"seizure_expires_on": date(2099, 12, 31)})
    finally:
        engine.dispose()
    assert main(["notice-key", "--config", str(config)]) == 0
    out = config.parent / "notice.pdf"
    assert main(["notice", "seal-0001", "-o", str(out), "--config", str(config)]) == 0
    assert "valid through 2099-12-31" in capsys.readouterr().out.splitlines()[-2]
    text = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, check=True).stdout.decode()
    assert "2099-12-31" in text or "2099年12月31日" in text
