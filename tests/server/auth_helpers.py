"""Test helpers for the authenticated API: users made with the real functions, logins, clients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select

from seal_protocol.signing import load_or_create_signing_key
from server.auth.access import Role
from server.auth.models import User
from server.auth.passwords import MAX_CONCURRENT_HASHES, hash_password, hashing_slots
from server.auth.sessions import issue_session
from server.auth.users import assign_case, change_user, create_user, get_user
from server.config import CommandSettings, EvidenceSettings, MqttSettings, NoticeSettings, Settings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.stores import make_store_roots

PASSWORD = "correct horse battery staple"
LOG_ORIGIN = "court.example/seal-log"
PUBLIC_BASE_URL = "https://seal.court.example"
#: Weaker argon2 parameters than the current ones (argon2-cffi's defaults): a hash stored before they were raised.
OLD_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@cache
def password_hash() -> str:
    """One argon2 hash of PASSWORD for the whole run: hashing costs ~0.1 s, and users are made by the dozen."""
    return hash_password(PASSWORD)


def make_settings(database_url: str, tmp_path: Path, **auth: Any) -> Settings:
    """Settings of an API under test: no broker, and a court command key, a log key (``log.key``, made on first use)
    and a notice key (``notice.key``) of its own in ``tmp_path``; notices lead to :data:`PUBLIC_BASE_URL`; the
    stores' directories made."""
    (tmp_path / "unused-password").write_text("unused\n")
    mqtt = MqttSettings(port=1, password_file=tmp_path / "unused-password")
    court_key = tmp_path / "court-command.key"
    load_or_create_signing_key(court_key)
    notice_key = tmp_path / "notice.key"
    load_or_create_signing_key(notice_key)
    settings = Settings(
        database_url=database_url,
        snapshot_dir=tmp_path / "snapshots",
        mqtt=mqtt,
        auth={"cookie_secure": False, **auth},  # type: ignore[arg-type]
        commands=CommandSettings(signing_key_file=court_key),
        evidence=EvidenceSettings(log_key_file=tmp_path / "log.key", log_origin=LOG_ORIGIN),
        notices=NoticeSettings(key_file=notice_key, public_base_url=PUBLIC_BASE_URL),
    )
    make_store_roots(settings)  # as `seal-server init` does: the stores' directories are never made by a write
    return settings


def add_user(session_factory: SessionFactory, username: str, role: Role, cases: Iterable[str] = ()) -> None:
    with session_scope(session_factory) as session:
        user = create_user(session, username=username, role=role, password_hash=password_hash())
        for case_no in cases:
            assign_case(session, user=user, case_no=case_no)


def bearer(session_factory: SessionFactory, username: str) -> dict[str, str]:
    """Authorization headers of a fresh login of ``username`` (issued the way the login route issues them)."""
    with session_scope(session_factory) as session:
        user = get_user(session, username=username)
        issued = issue_session(session, user=user, now=utc_now(), ttl_s=3600)
    return {"Authorization": f"Bearer {issued.token}"}


def add_user_with_old_hash(session_factory: SessionFactory, username: str, password: str) -> str:
    """An officer whose password hash was made with :data:`OLD_HASHER`'s parameters; that hash."""
    old = OLD_HASHER.hash(password)
    with session_scope(session_factory) as session:
        create_user(session, username=username, role=Role.OFFICER, password_hash=old)
    return old


def stored_hash(session_factory: SessionFactory, username: str) -> str | None:
    with session_factory() as session:
        return session.scalar(select(User.password_hash).where(User.username == username))


@contextmanager
def hashing_slots_taken() -> Iterator[None]:
    """Every hashing slot taken (as by other sign-ins hashing) until the block ends: a password check or hash waits
    for one meanwhile, with no transaction held."""
    taken = 0
    try:
        for _ in range(MAX_CONCURRENT_HASHES):
            assert hashing_slots.acquire(timeout=5)
            taken += 1
        yield
    finally:
        for _ in range(taken):
            hashing_slots.release()


def clerk_acts_on_officer(session_factory: SessionFactory, meanwhile: str, reset_hash: str) -> None:
    """The clerk resets the officer's password to ``reset_hash`` (``meanwhile`` "reset") or disables them
    ("disabled"); either ends the officer's logins."""
    with session_scope(session_factory) as session:
        clerk, officer = get_user(session, username="clerk"), get_user(session, username="officer")
        if meanwhile == "reset":
            change_user(session, actor=clerk, user=officer, password_hash=reset_hash)
        else:
            change_user(session, actor=clerk, user=officer, disabled=True)
