"""Sign-ins that meet another change of the user's row: the password is checked (and a hash with old argon2
parameters made anew) with no transaction held, then the transaction that issues the session looks at the row
again. A hash made anew meanwhile by another sign-in with the same password lets this one through; a password reset
or a disabled account meanwhile stops it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, event, select

from server.audit.models import AuditEntry
from server.auth.access import Role
from server.auth.errors import NotAuthenticated
from server.auth.login import SignedIn, sign_in
from server.auth.passwords import hash_password, rehashed, verify_password
from server.config import AuthSettings
from server.core.db import SessionFactory
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import (
    PASSWORD,
    add_user,
    add_user_with_old_hash,
    clerk_acts_on_officer,
    hashing_slots_taken,
    stored_hash,
)
from tests.server.pg_locks import Side

RESET = "the clerk's reset passphrase"


def test_two_sign_ins_at_once_with_an_old_hash_both_succeed(
    engine: Engine, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The officer signs in from two tabs at the same moment, and the stored hash has old argon2 parameters. Both
    read it and wait for a hashing slot (all taken); then both check it and make it anew, and the sign-in that locks
    the row second finds the other's new hash stored. The password matches that one too: it signs in (before, it
    was refused as if the password had been changed meanwhile)."""
    caplog.set_level(logging.INFO, logger="server.auth.login")
    old = add_user_with_old_hash(session_factory, "officer", PASSWORD)
    with hashing_slots_taken(), users_read(engine) as reads:
        sides = [Side(lambda: sign_in_officer(session_factory)) for _ in range(2)]
        assert wait_until(lambda: len(reads) == 2, 5)  # both have read the old hash, and wait for a slot to check it
    signed_in: list[SignedIn] = [side.join() for side in sides]
    assert [done.user.username for done in signed_in] == ["officer", "officer"]
    assert signed_in[0].issued.token != signed_in[1].issued.token

    new = stored_hash(session_factory, "officer")
    assert new is not None and new != old and verify_password(new, PASSWORD) and rehashed(new, PASSWORD) is None
    assert sign_ins_audited(session_factory, "officer") == [("login", None), ("login", None)]
    logged = [r.getMessage() for r in caplog.records if r.name == "server.auth.login"]
    assert [line for line in logged if "meanwhile" in line] == [
        "login of officer: the password hash was made anew meanwhile, and the password matches it"
    ]


@pytest.mark.parametrize("meanwhile", ["reset", "disabled"])
def test_a_reset_or_a_disabling_meanwhile_still_stops_a_sign_in(
    meanwhile: str, engine: Engine, session_factory: SessionFactory
) -> None:
    """The clerk resets the officer's password (or disables them) while the sign-in waits to check the old one: the
    password no longer matches the hash stored, or the account is disabled, and the sign-in is refused."""
    add_user(session_factory, "clerk", Role.CLERK)
    add_user_with_old_hash(session_factory, "officer", PASSWORD)
    reset_hash = hash_password(RESET)
    with hashing_slots_taken(), users_read(engine) as reads:
        signing_in = Side(lambda: sign_in_officer(session_factory))
        assert wait_until(lambda: len(reads) == 1, 5)  # it has read the old hash, and waits for a slot to check it
        clerk_acts_on_officer(session_factory, meanwhile, reset_hash)
    with pytest.raises(NotAuthenticated):
        signing_in.join()
    reason = "password changed meanwhile" if meanwhile == "reset" else "disabled"
    assert sign_ins_audited(session_factory, "officer") == [("login.failed", reason)]


def sign_in_officer(session_factory: SessionFactory) -> SignedIn:
    with session_factory() as session:
        return sign_in(session, username="officer", password=PASSWORD, ip="203.0.113.9", settings=AuthSettings())


@contextmanager
def users_read(engine: Engine) -> Iterator[list[str]]:
    """The statements that read the users table from threads other than the test's own (the sign-ins'), as
    ``engine`` runs them, until the block ends."""
    reads: list[str] = []

    def executed(conn: object, cursor: object, statement: str, *args: object) -> None:
        if threading.current_thread() is not threading.main_thread() and "FROM users" in statement:
            reads.append(statement)

    event.listen(engine, "after_cursor_execute", executed)
    try:
        yield reads
    finally:
        event.remove(engine, "after_cursor_execute", executed)


def sign_ins_audited(session_factory: SessionFactory, username: str) -> list[tuple[str, str | None]]:
    """The audit entries of ``username``'s sign-ins: the action and the reason of a refusal."""
    with session_factory() as session:
        query = select(AuditEntry).where(AuditEntry.target == username, AuditEntry.action.startswith("login"))
        return [(row.action, row.details.get("reason")) for row in session.scalars(query.order_by(AuditEntry.id))]
