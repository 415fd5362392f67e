"""Migration 0021 makes the seals' public keys unique, in their canonical spelling. On a court whose seals already
share a key it does not fail: it leaves the index out, says which seals share which key and what to do, and the court
runs on (the registrations refuse any new sharing)."""

from __future__ import annotations

import base64
import logging

import pytest
from sqlalchemy import Engine, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError

from seal_protocol.signing import generate_signing_key, public_key_b64
from server.core.db import make_engine
from server.migrations.run import current_revision, downgrade, pending_differences, upgrade
from server.seals.models import Seal

#: 0020_snapshots_by_seal_and_time: the revision before the seals' keys were unique.
BEFORE = "7b3e9d5a1f82"
INDEX = "ix_seals_public_key"


def _key() -> str:
    return public_key_b64(generate_signing_key())


def _respelled(key: str) -> str:
    """The same 32 bytes spelled otherwise (the unused low bits of the last character set), as a court that stored
    keys before they were normalised might hold them."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    spelled = key[:42] + alphabet[alphabet.index(key[42]) | 0b11] + "="
    assert spelled != key and base64.b64decode(spelled) == base64.b64decode(key)
    return spelled


def _at_0020_with(engine: Engine, seals: dict[str, str]) -> str:
    upgrade(engine)
    head = current_revision(engine)
    assert head is not None
    downgrade(engine, BEFORE)
    with engine.begin() as conn:
        for device_id, key in seals.items():
            conn.execute(insert(Seal).values(device_id=device_id, public_key=key, location=""))
    return head


def _indexes(engine: Engine) -> dict[str, bool]:
    return {str(index["name"]): bool(index["unique"]) for index in inspect(engine).get_indexes("seals")}


def _keys(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {row.device_id: row.public_key for row in conn.execute(select(Seal.device_id, Seal.public_key))}


def test_the_keys_become_unique_and_canonical(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        one, two = _key(), _key()
        head = _at_0020_with(engine, {"seal-0001": one, "seal-0002": _respelled(two)})
        assert INDEX not in _indexes(engine)

        upgrade(engine)

        assert current_revision(engine) == head and pending_differences(engine) == []
        assert _indexes(engine)[INDEX] is True
        assert _keys(engine) == {"seal-0001": one, "seal-0002": two}
        with engine.begin() as conn, pytest.raises(IntegrityError):
            conn.execute(insert(Seal).values(device_id="seal-0003", public_key=one, location=""))
        downgrade(engine, BEFORE)
        assert INDEX not in _indexes(engine)
    finally:
        engine.dispose()


def test_seals_sharing_a_key_are_named_and_the_court_runs_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database_url)
    try:
        shared, alone = _key(), _key()
        seals = {"seal-0002": shared, "seal-0001": _respelled(shared), "seal-0003": alone, "seal-0009": _key()}
        head = _at_0020_with(engine, seals)

        with caplog.at_level(logging.WARNING):
            upgrade(engine)

        assert current_revision(engine) == head  # the court starts: it migrates at start
        (warning,) = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "server.migrations.seal_keys"
        ]
        assert warning.startswith("封条共用公钥：seal-0001, seal-0002。")
        assert "seals sharing a public key: seal-0001, seal-0002." in warning and "seal-0003" not in warning
        assert "--replace-key" in warning and "new device id" in warning
        assert INDEX not in _indexes(engine)
        assert _keys(engine)["seal-0001"] == shared  # canonical all the same
        downgrade(engine, BEFORE)  # nothing to drop: no failure either
    finally:
        engine.dispose()


def test_the_index_left_out_is_created_at_a_later_start_once_no_seals_share_a_key(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in the last note: where the migration left the index out, nothing created it later."""
    engine = make_engine(database_url)
    try:
        shared = _key()
        _at_0020_with(engine, {"seal-0001": shared, "seal-0002": shared})
        upgrade(engine)
        with caplog.at_level(logging.WARNING, logger="server.seals.seal_keys"):
            upgrade(engine)  # the next start: still shared, said again
        assert INDEX not in _indexes(engine)
        assert any("1 group(s) of seals still share a public key" in r.getMessage() for r in caplog.records)
        with engine.begin() as conn:  # the cloned device was given a key of its own
            conn.execute(update(Seal).where(Seal.device_id == "seal-0002").values(public_key=_key()))
        upgrade(engine)
        assert _indexes(engine)[INDEX] is True and pending_differences(engine) == []
        with engine.begin() as conn, pytest.raises(IntegrityError):
            conn.execute(insert(Seal).values(device_id="seal-0003", public_key=shared, location=""))
    finally:
        engine.dispose()
