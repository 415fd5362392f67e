"""A seal's public key is its own: the court refuses one that another seal holds (devices cloned from one SD-card
image share their key, and each could sign as the other) or that is one of the court's own keys (the court would hold
the "seal's" private key and could forge its evidence) — on the command line, through the API, on a key change, and,
for two registrations at once, in the database (unique index, migration 0021)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from seal_protocol.signing import generate_signing_key, load_or_create_signing_key, public_key_b64
from server.app import create_app
from server.auth.access import Role
from server.cli import main
from server.core.db import SessionFactory, make_engine, make_session_factory, session_scope
from server.errors import AlreadyExists
from server.seals.cases import add_case
from server.seals.models import MqttAccount, Seal
from server.seals.registry import add_seal, register_seal
from tests.server.auth_helpers import add_user, bearer, make_settings
from tests.server.helpers import CASE_A, add_test_case
from tests.server.pg_locks import Side, wait_for_lock_waits
from tests.server.test_cli import write_config

CASE = "(2021)苏0214执1234号"
OTHER = "(2021)苏0214执1235号"


def _key() -> str:
    return public_key_b64(generate_signing_key())


def _non_canonical(key: str) -> str:
    """The same 32 bytes in a spelling standard decoders accept: the unused low bits of the last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(key[42])
    spelled = key[:42] + alphabet[last | 0b11] + "="
    assert spelled != key and base64.b64decode(spelled) == base64.b64decode(key)
    return spelled


@pytest.fixture
def court(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A court's configuration with its command, log and notice keys (and a retired notice key), two cases."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = write_config(tmp_path, database_url)
    for name in ("command.key", "log.key", "notice.key"):
        load_or_create_signing_key(tmp_path / name)
    with config.open("a", encoding="utf-8") as toml:
        toml.write(
            f'[commands]\nsigning_key_file = "{tmp_path / "command.key"}"\n'
            f'[evidence]\nlog_key_file = "{tmp_path / "log.key"}"\nlog_origin = "court.example/seal-log"\n'
            f'[notices]\nkey_file = "{tmp_path / "notice.key"}"\nretired_public_keys = ["{_key()}"]\n'
        )
    assert main(["init-db", "--config", str(config)]) == 0
    for case_no in (CASE, OTHER):
        assert main(["case", "add", case_no, "--court", "无锡市新吴区人民法院", "--config", str(config)]) == 0
    return config


def _seals(database_url: str) -> dict[str, str]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return {s.device_id: s.public_key for s in session.scalars(select(Seal))}
    finally:
        engine.dispose()


def _accounts(database_url: str) -> set[str]:
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return set(session.scalars(select(MqttAccount.username)))
    finally:
        engine.dispose()


def test_the_command_line_refuses_another_seals_key_in_any_spelling(
    court: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(court)]
    key = _key()
    assert main(["seal", "add", "seal-0001", "--case", CASE, "--public-key", key, *cfg]) == 0
    capsys.readouterr()

    for spelled in (key, f"  {key}\n"):
        assert main(["seal", "add", "seal-0002", "--case", OTHER, "--public-key", spelled, *cfg]) == 1
        err = capsys.readouterr().err
        assert "此公钥已登记给封条 seal-0001" in err and "registered for seal 'seal-0001' already" in err
        assert err.index("此公钥") < err.index("this public key")  # Chinese first
    assert main(["seal", "add", "seal-0002", "--case", OTHER, "--public-key", _non_canonical(key), *cfg]) == 1
    assert "canonical" in capsys.readouterr().err  # another spelling of a key is no key at all

    # Nor may a registered seal take it as its new key.
    assert main(["seal", "add", "seal-0003", "--case", OTHER, "--public-key", _key(), *cfg]) == 0
    before = _seals(database_url)
    capsys.readouterr()
    assert main(["seal", "add", "seal-0003", "--case", OTHER, "--public-key", key, "--replace-key", *cfg]) == 1
    assert "此公钥已登记给封条 seal-0001" in capsys.readouterr().err
    assert _seals(database_url) == before and set(before) == {"seal-0001", "seal-0003"}
    assert "seal-0002" not in _accounts(database_url)  # no MQTT password was handed out

    # The seal itself registered again with its own key is no duplicate.
    assert main(["seal", "add", "seal-0001", "--case", CASE, "--public-key", key, *cfg]) == 0


def test_the_command_line_refuses_the_courts_own_keys(
    court: Path, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(court)]
    assert main(["court-key", *cfg]) == 0  # as the reviewer gave it: what `seal-server court-key` prints
    printed = capsys.readouterr().out.strip()
    retired = court.read_text(encoding="utf-8").split('retired_public_keys = ["')[1].split('"')[0]
    own = {
        "command": (printed, "法院指令签名密钥", "command-signing key"),
        "log": (public_key_b64(load_or_create_signing_key(tmp_path / "log.key")[0]), "证据日志", "evidence log"),
        "notice": (public_key_b64(load_or_create_signing_key(tmp_path / "notice.key")[0]), "公告签名", "notice"),
        "retired": (retired, "已停用的公告签名密钥", "retired notice"),
    }
    for n, (key, chinese, english) in enumerate(own.values()):
        assert main(["seal", "add", f"seal-000{n}", "--case", CASE, "--public-key", key, *cfg]) == 1
        err = capsys.readouterr().err
        assert chinese in err and english in err and "cannot be registered as seal" in err
    # ... and as a new key of a registered seal.
    assert main(["seal", "add", "seal-0009", "--case", CASE, "--public-key", _key(), *cfg]) == 0
    assert main(["seal", "add", "seal-0009", "--case", CASE, "--public-key", printed, "--replace-key", *cfg]) == 1
    assert "法院指令签名密钥" in capsys.readouterr().err
    assert printed not in _seals(database_url).values()
    assert set(_seals(database_url)) == {"seal-0009"}


@pytest.fixture
def client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    add_user(session_factory, "clerk", Role.CLERK)
    with session_scope(session_factory) as session:
        add_case(session, actor=None, case_no=CASE, court="无锡市新吴区人民法院")
    with TestClient(create_app(make_settings(database_url, tmp_path), with_ingest=False)) as instance:
        yield instance


def test_the_api_answers_409_for_another_seals_key_and_the_courts(
    client: TestClient, session_factory: SessionFactory, tmp_path: Path
) -> None:
    clerk = bearer(session_factory, "clerk")
    key = _key()
    assert client.post("/api/seals", json={"device_id": "seal-a", "public_key": key}, headers=clerk).status_code == 201

    again = client.post("/api/seals", json={"device_id": "seal-b", "public_key": f" {key} "}, headers=clerk)
    assert again.status_code == 409
    assert again.json()["detail"].startswith("此公钥已登记给封条 seal-a") and "seal 'seal-a'" in again.json()["detail"]

    load_or_create_signing_key(tmp_path / "log.key")  # made on first use: here, now
    for name in ("court-command.key", "log.key", "notice.key"):
        court_key = public_key_b64(load_or_create_signing_key(tmp_path / name)[0])
        answer = client.post("/api/seals", json={"device_id": "seal-c", "public_key": court_key}, headers=clerk)
        assert answer.status_code == 409, name
        assert (
            answer.json()["detail"].startswith("此公钥是") and "cannot be registered as seal" in answer.json()["detail"]
        )
    with session_factory() as session:
        assert set(session.scalars(select(Seal.device_id))) == {"seal-a"}


def test_the_database_holds_one_seal_per_key(session_factory: SessionFactory) -> None:
    key = _key()
    with session_scope(session_factory) as session:
        session.add(Seal(device_id="seal-a", public_key=key, case_no=None, location=""))
    with session_factory() as session, pytest.raises(IntegrityError):
        session.execute(insert(Seal).values(device_id="seal-b", public_key=key, location=""))


def test_a_seal_sharing_its_key_since_before_the_check_is_still_bound_with_its_own_key(
    session_factory: SessionFactory,
) -> None:
    """A court upgraded with cloned seals (migration 0021 then leaves the index out): binding one of them with the
    key it is registered with takes the key from no one — refused, the seal could not be moved by the command line.
    A new seal with that key is still refused."""
    key = _key()
    with session_scope(session_factory) as session:
        session.execute(text("DROP INDEX ix_seals_public_key"))
        add_test_case(session, CASE_A)
        session.add_all(Seal(device_id=d, public_key=key, case_no=None, location="") for d in ("seal-a", "seal-b"))
    with session_scope(session_factory) as session:
        register_seal(session, actor=None, device_id="seal-a", case_no=CASE_A, public_key=key)
    with session_scope(session_factory) as session, pytest.raises(AlreadyExists):
        register_seal(session, actor=None, device_id="seal-c", case_no=CASE_A, public_key=key)
    with session_factory() as session:
        assert session.scalar(select(Seal.case_no).where(Seal.device_id == "seal-a")) == CASE_A


def test_of_two_registrations_of_one_key_at_once_one_wins(pg_engine: Engine) -> None:
    """The second waits at the unique index for the first, then is refused as a sequential one is."""
    factory = make_session_factory(pg_engine)
    key = _key()
    with factory() as first:
        add_seal(first, actor=None, device_id="seal-a", public_key=key)  # flushed, not committed

        def second() -> None:
            with factory() as session:
                add_seal(session, actor=None, device_id="seal-b", public_key=key)
                session.commit()

        side = Side(second)
        wait_for_lock_waits(pg_engine, 1)
        first.commit()
    with pytest.raises(AlreadyExists, match="此公钥已登记给封条 seal-a"):
        side.join()
    with factory() as session:
        assert list(session.scalars(select(Seal.device_id))) == ["seal-a"]
