"""Changing one's own password: the current password is checked and the new one hashed with no transaction held
(argon2 takes 64 MiB and tens of milliseconds, more while it waits for a hashing slot), and the transaction that
stores the new hash looks at the user's row again — a reset or a disabling committed meanwhile stops the change —
and at the login it is made from: one ended meanwhile (signed out in another tab) stops it too."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.auth.access import Role
from server.auth.errors import Forbidden, NotAuthenticated, TooManyAttempts
from server.auth.login import change_password, sign_out
from server.auth.models import LoginFailure
from server.auth.passwords import MAX_CONCURRENT_HASHES, hash_password, hashing_slots, verify_password
from server.auth.sessions import issue_session, resolve_session
from server.auth.users import change_user, get_user
from server.config import AuthSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from tests.agent.helpers import wait_until
from tests.server.auth_helpers import PASSWORD, add_user, clerk_acts_on_officer, hashing_slots_taken
from tests.server.pg_locks import Side

NEW = "a brand new passphrase"
FROM = {"ip": "203.0.113.9", "settings": AuthSettings()}  # where the request came from, the court's settings
RESET = "the clerk's reset passphrase"


@pytest.mark.parametrize("meanwhile", ["reset", "disabled"])
def test_a_password_change_hashes_with_no_transaction_held_and_a_change_meanwhile_stops_it(
    meanwhile: str, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """An officer changes their password while every hashing slot is taken (other sign-ins hashing). The change
    waits for a slot holding no transaction, so the clerk's reset of that password (or disabling of the officer)
    commits meanwhile — before, it waited for the change's transaction: on SQLite the database's write lock, taken
    by the request's first statement. Then the change, which checked the old password, is refused (the reset ended
    the officer's logins, this one too) instead of overwriting the reset (before, on PostgreSQL, it did)."""
    add_user(session_factory, "clerk", Role.CLERK)
    add_user(session_factory, "officer", Role.OFFICER)
    with session_scope(session_factory) as session:
        token = issue_session(session, user=get_user(session, username="officer"), now=utc_now(), ttl_s=3600).token
    reset_hash = hash_password(RESET)
    read = threading.Event()

    def change() -> None:
        with session_factory() as session:  # a request of the officer's: its login resolved as the API's get_login does
            resolved = resolve_session(session, secret=token, via_cookie=False, now=utc_now())
            assert resolved is not None
            login, officer = resolved
            read.set()
            change_password(session, user=officer, session_id=login.id, current=PASSWORD, new=NEW, **FROM)

    def reset() -> None:
        clerk_acts_on_officer(session_factory, meanwhile, reset_hash)

    for _ in range(MAX_CONCURRENT_HASHES):
        assert hashing_slots.acquire(timeout=5)
    try:
        changing = Side(change)
        assert read.wait(30)
        resetting = Side(reset)
        assert wait_until(lambda: resetting.finished, 5), "the clerk's change waited for the password change's"
        resetting.join()
    finally:
        for _ in range(MAX_CONCURRENT_HASHES):
            hashing_slots.release()
    with pytest.raises(NotAuthenticated, match="meanwhile"):
        changing.join()

    with session_factory() as session:
        officer = get_user(session, username="officer")
        assert verify_password(officer.password_hash, RESET if meanwhile == "reset" else PASSWORD)
        assert not verify_password(officer.password_hash, NEW)
        assert officer.disabled is (meanwhile == "disabled")
        assert resolve_session(session, secret=token, via_cookie=False, now=utc_now()) is None  # ended by the clerk
    refused = [r.getMessage() for r in caplog.records if r.name == "server.auth.login"]
    changed = "password changed meanwhile" if meanwhile == "reset" else "disabled"
    assert refused == [f"password change of officer refused: {changed}"]


def test_a_password_change_with_nothing_meanwhile_stores_the_new_hash_and_ends_the_other_logins(
    session_factory: SessionFactory,
) -> None:
    add_user(session_factory, "officer", Role.OFFICER)
    with session_scope(session_factory) as session:
        officer = get_user(session, username="officer")
        mine, other = (issue_session(session, user=officer, now=utc_now(), ttl_s=3600) for _ in range(2))
    with session_factory() as session:
        login, officer = resolve_session(session, secret=mine.token, via_cookie=False, now=utc_now()) or (None, None)
        assert login is not None and officer is not None
        change_password(session, user=officer, session_id=login.id, current=PASSWORD, new=NEW, **FROM)
    with session_factory() as session:
        assert verify_password(get_user(session, username="officer").password_hash, NEW)
        assert resolve_session(session, secret=mine.token, via_cookie=False, now=utc_now()) is not None
        assert resolve_session(session, secret=other.token, via_cookie=False, now=utc_now()) is None


@pytest.mark.parametrize("meanwhile", ["signed out", "role changed"])
def test_a_password_change_from_a_login_ended_meanwhile_is_refused(
    meanwhile: str, session_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The officer changes their password in one tab and signs out in another while the change waits for a hashing
    slot (or a clerk changes their role, which ends their logins): the change, made from a login that has ended, is
    refused as a reset meanwhile refuses it (401, log in again) — before, it went through, and ended the officer's
    other logins."""
    add_user(session_factory, "clerk", Role.CLERK)
    add_user(session_factory, "officer", Role.OFFICER)
    with session_scope(session_factory) as session:
        officer = get_user(session, username="officer")
        mine, other = (issue_session(session, user=officer, now=utc_now(), ttl_s=3600) for _ in range(2))
    read = threading.Event()

    def change() -> None:
        with session_factory() as session:  # a request of the officer's, its login live when resolved
            resolved = resolve_session(session, secret=mine.token, via_cookie=False, now=utc_now())
            assert resolved is not None
            login, officer = resolved
            read.set()
            change_password(session, user=officer, session_id=login.id, current=PASSWORD, new=NEW, **FROM)

    with hashing_slots_taken():
        changing = Side(change)
        assert read.wait(30)
        with session_scope(session_factory) as session:
            officer = get_user(session, username="officer")
            if meanwhile == "signed out":
                sign_out(session, user=officer, session_id=mine.session_id)
            else:
                change_user(session, actor=get_user(session, username="clerk"), user=officer, role=Role.JUDGE)
    with pytest.raises(NotAuthenticated, match="This login has ended meanwhile"):
        changing.join()

    with session_factory() as session:
        assert verify_password(get_user(session, username="officer").password_hash, PASSWORD)  # not changed
        assert resolve_session(session, secret=mine.token, via_cookie=False, now=utc_now()) is None
        still = resolve_session(session, secret=other.token, via_cookie=False, now=utc_now())
        assert (still is not None) is (meanwhile == "signed out")  # not ended by the change
    refused = [r.getMessage() for r in caplog.records if r.name == "server.auth.login"]
    assert refused == ["password change of officer refused: this login ended meanwhile"]


def _changing(session_factory: SessionFactory, token: str, read: threading.Event) -> Side:
    """A request of the officer's changing their password (its login resolved as the API's get_login does), on a
    thread of its own; ``read`` is set once it has read the officer's row."""

    def change() -> None:
        with session_factory() as session:
            resolved = resolve_session(session, secret=token, via_cookie=False, now=utc_now())
            assert resolved is not None
            login, officer = resolved
            read.set()
            change_password(session, user=officer, session_id=login.id, current=PASSWORD, new=NEW, **FROM)

    return Side(change)


def test_a_password_change_sent_twice_from_one_login_changes_it_once_and_keeps_the_login(
    session_factory: SessionFactory,
) -> None:
    """The form sent twice (a double click, an API client sending its PUT again): both requests checked the old
    password; the second finds the first's hash stored, this login live, and the new password matching it — the
    change it asks for is made, and it says so. Before, it was refused as "this login has ended" (401: the page sent
    the officer to sign in and back to an empty form), then as a wrong current password (a failed login counted
    and audited, the officer told the change failed)."""
    add_user(session_factory, "officer", Role.OFFICER)
    with session_scope(session_factory) as session:
        token = issue_session(session, user=get_user(session, username="officer"), now=utc_now(), ttl_s=3600).token
    read = [threading.Event(), threading.Event()]
    with hashing_slots_taken():
        sides = [_changing(session_factory, token, event) for event in read]
        assert all(event.wait(30) for event in read)
    for side in sides:
        side.join()
    with session_factory() as session:
        assert verify_password(get_user(session, username="officer").password_hash, NEW)
        assert resolve_session(session, secret=token, via_cookie=False, now=utc_now()) is not None
        assert session.scalars(select(LoginFailure)).all() == []
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("user.password%"))).all()
        assert actions == ["user.password"]


def test_a_password_change_goes_on_over_the_same_password_hashed_anew_by_a_sign_in_meanwhile(
    session_factory: SessionFactory,
) -> None:
    """A sign-in of the officer (their hash made with older argon2 parameters) stores the same password's hash
    anew while the change waits for a hashing slot: the change checks the current password again against that
    hash, and goes on (before: refused, "this login has ended", though nothing had ended it)."""
    add_user(session_factory, "officer", Role.OFFICER)
    with session_scope(session_factory) as session:
        token = issue_session(session, user=get_user(session, username="officer"), now=utc_now(), ttl_s=3600).token
    anew = hash_password(PASSWORD)  # what the sign-in's rehash stores
    read = threading.Event()
    with hashing_slots_taken():
        changing = _changing(session_factory, token, read)
        assert read.wait(30)
        with session_scope(session_factory) as session:
            get_user(session, username="officer").password_hash = anew
    changing.join()
    with session_factory() as session:
        assert verify_password(get_user(session, username="officer").password_hash, NEW)
        assert resolve_session(session, secret=token, via_cookie=False, now=utc_now()) is not None


def test_wrong_current_passwords_are_audited_and_throttled_as_failed_sign_ins(session_factory: SessionFactory) -> None:
    """A stolen login must not guess the password faster than a sign-in may: each wrong current password is a
    failed attempt of the user from that address (audited), and past the limit the change is refused (429) before
    any password is checked — the right one included."""
    add_user(session_factory, "officer", Role.OFFICER)
    with session_scope(session_factory) as session:
        token = issue_session(session, user=get_user(session, username="officer"), now=utc_now(), ttl_s=3600).token
    settings = AuthSettings(login_max_failures=3)

    def change(current: str) -> None:
        with session_factory() as session:
            resolved = resolve_session(session, secret=token, via_cookie=False, now=utc_now())
            assert resolved is not None
            login, officer = resolved
            change_password(
                session,
                user=officer,
                session_id=login.id,
                current=current,
                new=NEW,
                ip="203.0.113.9",
                settings=settings,
            )

    for guess in range(3):
        with pytest.raises(Forbidden):
            change(f"guess number {guess}")
    with pytest.raises(TooManyAttempts):
        change(PASSWORD)
    with session_factory() as session:
        assert verify_password(get_user(session, username="officer").password_hash, PASSWORD)  # not changed
        failed = session.scalars(select(AuditEntry).where(AuditEntry.action == "user.password.failed")).all()
        assert [(entry.target, entry.details) for entry in failed] == [("officer", {"ip": "203.0.113.9"})] * 3
