"""Logging in and out: cookie and bearer token, throttling, CSRF, password storage, disabled users, audit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.auth.errors import TooManyAttempts
from server.auth.login import SignedIn, sign_in
from server.auth.models import AuthSession, LoginFailure, User
from server.auth.passwords import MAX_CONCURRENT_HASHES, hash_password, hashing_slots, rehashed, verify_password
from server.auth.throttle import ThrottleLimits, begin_login_attempt, forget_login_attempt
from server.config import AuthSettings, HttpSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, make_session_factory, session_scope
from server.seals.cases import add_case
from tests.server.auth_helpers import PASSWORD, add_user, add_user_with_old_hash, bearer, make_settings, stored_hash
from tests.server.pg_locks import Side, wait_for_lock_waits

CASE = "(2021)苏0214执1234号"
CSRF = {"X-Requested-With": "fetch"}


#: Small limits, so that the tests reach them: 3 per (username, address), 5 per address, 6 per IPv6 /48, 8 per
#: username in 60 s.
LIMITS = {
    "login_max_failures": 3,
    "login_address_max_failures": 5,
    "login_network_max_failures": 6,
    "login_user_max_failures": 8,
    "login_user_window_s": 60,
}


@pytest.fixture
def app_client(database_url: str, session_factory: SessionFactory, tmp_path: Path) -> Iterator[TestClient]:
    """A client of an app with a clerk and a judge; the cookie is Secure, so the client speaks https."""
    with session_scope(session_factory) as session:
        add_case(session, actor=None, case_no=CASE, court="无锡市滨湖区人民法院")
    add_user(session_factory, "clerk", Role.CLERK)
    add_user(session_factory, "judge", Role.JUDGE, [CASE])
    settings = make_settings(database_url, tmp_path, cookie_secure=True, **LIMITS)
    with TestClient(create_app(settings, with_ingest=False), base_url="https://testserver") as client:
        yield client


def from_address(client: TestClient, address: str) -> TestClient:
    """Another client of the same (started) app whose requests come from the socket address ``address``."""
    return TestClient(client.app, base_url="https://testserver", client=(address, 40000))


def guess(client: TestClient, username: str = "judge", **headers: str) -> int:
    body = {"username": username, "password": "a wrong guess!"}
    return client.post("/api/auth/login", json=body, headers=headers).status_code


def right(client: TestClient, username: str = "judge", **headers: str) -> int:
    body = {"username": username, "password": PASSWORD}
    return client.post("/api/auth/login", json=body, headers=headers).status_code


def login(client: TestClient, username: str = "judge", password: str = PASSWORD) -> dict[str, object]:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def audit_actions(session_factory: SessionFactory) -> list[tuple[str, str, str]]:
    """The audit log after the set-up's own entries (the court and case it adds)."""
    with session_factory() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        entries = [(row.actor, row.action, row.target) for row in rows]
    assert entries[:2] == [("-", "court.create", "苏0214"), ("-", "case.create", CASE)]
    return entries[2:]


def test_login_sets_a_strict_httponly_cookie_and_returns_a_token(app_client: TestClient) -> None:
    response = app_client.post("/api/auth/login", json={"username": "judge", "password": PASSWORD})
    assert response.status_code == 200
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("seal_session=")
    for attribute in ("HttpOnly", "SameSite=strict", "Secure", "Path=/"):
        assert attribute.lower() in cookie.lower()
    body = response.json()
    assert body["token_type"] == "bearer" and len(body["access_token"]) >= 40
    assert body["user"] == body["user"] | {"username": "judge", "role": "judge", "case_nos": [CASE]}
    assert body["access_token"] not in cookie  # two secrets: the cookie is not the token scripts see


def test_cookie_and_bearer_both_authenticate(app_client: TestClient) -> None:
    token = login(app_client)["access_token"]
    assert app_client.get("/api/auth/me").json()["username"] == "judge"  # by cookie
    app_client.cookies.clear()
    assert app_client.get("/api/auth/me").status_code == 401
    me = app_client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["case_nos"] == [CASE]


def test_unauthenticated_and_bad_tokens_are_401(app_client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic anVkZ2U6eA=="}):
        response = app_client.get("/api/cases", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    app_client.cookies.set("seal_session", "forged", domain="testserver")
    assert app_client.get("/api/cases").status_code == 401


def test_wrong_password_and_unknown_user_look_alike(app_client: TestClient, session_factory: SessionFactory) -> None:
    wrong = app_client.post("/api/auth/login", json={"username": "judge", "password": "not the password"})
    unknown = app_client.post("/api/auth/login", json={"username": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "set-cookie" not in wrong.headers
    # Only the account's failure is evidence: a made-up username is the caller's text, kept out of the log.
    assert audit_actions(session_factory) == [("-", "login.failed", "judge")]


def test_failed_logins_are_throttled_per_username_and_address(app_client: TestClient) -> None:
    attacker = from_address(app_client, "198.51.100.7")
    assert [guess(attacker) for _ in range(3)] == [401, 401, 401]
    throttled = attacker.post("/api/auth/login", json={"username": "judge", "password": PASSWORD})
    assert throttled.status_code == 429  # even the right password: guessing must not go on
    retry = int(throttled.headers["retry-after"])
    assert 295 <= retry <= 300
    assert f"retry in {retry} s" in throttled.json()["detail"]
    assert "this username from this address" in throttled.json()["detail"]
    assert right(from_address(app_client, "203.0.113.20")) == 200  # the judge, elsewhere: not locked out
    assert right(attacker, "clerk") == 200  # another user from the attacker's address: not locked out either


def test_failed_logins_are_throttled_per_address(app_client: TestClient) -> None:
    attacker = from_address(app_client, "198.51.100.8")
    assert [guess(attacker, name) for name in ("a-user", "b-user", "c-user", "d-user", "e-user")] == [401] * 5
    throttled = attacker.post("/api/auth/login", json={"username": "clerk", "password": PASSWORD})
    assert throttled.status_code == 429 and "this address" in throttled.json()["detail"]
    assert right(from_address(app_client, "203.0.113.21"), "clerk") == 200


def test_a_guess_from_many_addresses_is_braked_but_one_address_cannot_lock_a_user(app_client: TestClient) -> None:
    """One address stops at 3 failures for the judge, below the judge's brake of 8; 8 addresses reach it, and then
    even the right password waits (less than a minute)."""
    assert [guess(from_address(app_client, "198.51.100.9")) for _ in range(4)] == [401, 401, 401, 429]
    assert right(from_address(app_client, "203.0.113.22")) == 200
    for n in range(2, 4):  # two more addresses, 3 failures each: 9 tried, the 9th over the brake
        assert [guess(from_address(app_client, f"198.51.100.{10 + n}")) for _ in range(3)][:2] == [401, 401]
    braked = from_address(app_client, "203.0.113.23").post(
        "/api/auth/login", json={"username": "judge", "password": PASSWORD}
    )
    assert braked.status_code == 429
    assert "for this username;" in braked.json()["detail"]
    assert 1 <= int(braked.headers["retry-after"]) <= 60


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(app_client: TestClient) -> None:
    attacker = from_address(app_client, "198.51.100.30")
    statuses = [guess(attacker, **{"X-Forwarded-For": f"192.0.2.{n}"}) for n in range(4)]
    assert statuses == [401, 401, 401, 429]  # a header of its own choosing does not make it someone else


def test_an_ipv6_host_is_throttled_by_its_64_prefix_not_by_each_address(app_client: TestClient) -> None:
    """One IPv6 host holds a whole /64: new addresses from it are the same guesser, another /64 is someone else."""
    statuses = [guess(from_address(app_client, f"2001:db8:1:2::{n:x}")) for n in range(1, 5)]
    assert statuses == [401, 401, 401, 429]
    assert right(from_address(app_client, "2001:db8:1:3::1")) == 200  # the next /64: another host


def test_behind_a_trusted_proxy_the_client_is_the_right_most_untrusted_hop(
    database_url: str, session_factory: SessionFactory, tmp_path: Path
) -> None:
    add_user(session_factory, "judge", Role.JUDGE)
    settings = make_settings(database_url, tmp_path, **LIMITS)
    settings = settings.model_copy(update={"http": HttpSettings(trusted_proxies=["10.0.0.0/24", "2001:db8::1"])})
    with TestClient(create_app(settings, with_ingest=False), client=("10.0.0.5", 1234)) as proxy:
        for spoof in ("192.0.2.1", "192.0.2.2, 10.0.0.9", "unknown, 192.0.2.3"):
            assert guess(proxy, **{"X-Forwarded-For": f"{spoof}, 203.0.113.50, 10.0.0.7"}) == 401
        assert guess(proxy, **{"X-Forwarded-For": "192.0.2.4, 203.0.113.50"}) == 429  # one client, whatever it says
        assert right(proxy, **{"X-Forwarded-For": "203.0.113.51"}) == 200  # another client behind the proxy
        assert right(proxy, **{"X-Forwarded-For": "203.0.113.50"}) == 429
    with session_factory() as session:
        ips = [row.details["ip"] for row in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert ips == ["203.0.113.50"] * 3 + ["203.0.113.51"]


def test_throttle_window_passes(session_factory: SessionFactory, app_client: TestClient) -> None:
    for _ in range(3):
        app_client.post("/api/auth/login", json={"username": "judge", "password": "guess guess guess"})
    with session_scope(session_factory) as session:  # let the failures age past the window
        for failure in session.scalars(select(LoginFailure)):
            failure.at -= timedelta(hours=1)
    assert app_client.post("/api/auth/login", json={"username": "judge", "password": PASSWORD}).status_code == 200


def test_logout_ends_cookie_and_token(app_client: TestClient) -> None:
    token = login(app_client)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert app_client.post("/api/auth/logout", headers=CSRF).status_code == 204
    assert app_client.get("/api/auth/me").status_code == 401
    assert app_client.get("/api/auth/me", headers=auth).status_code == 401


def test_cookie_requests_that_change_things_need_the_csrf_header(app_client: TestClient) -> None:
    login(app_client, "clerk")
    case = {"case_no": "(2024)苏0214执1号"}
    refused = app_client.post("/api/cases", json=case)
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
    assert app_client.get("/api/cases").status_code == 200  # reads need no header
    assert app_client.post("/api/cases", json=case, headers=CSRF).status_code == 201
    assert app_client.post("/api/auth/logout").status_code == 403


def test_bearer_requests_need_no_csrf_header(app_client: TestClient) -> None:
    token = login(app_client, "clerk")["access_token"]
    app_client.cookies.clear()
    response = app_client.post(
        "/api/cases", json={"case_no": "(2024)苏0214执2号"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201


def test_expired_session_is_401(app_client: TestClient, session_factory: SessionFactory) -> None:
    token = login(app_client)["access_token"]
    with session_scope(session_factory) as session:
        session.execute(update(AuthSession).values(expires_at=AuthSession.created_at))
    assert app_client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_disabling_a_user_ends_their_logins_and_refuses_new_ones(
    app_client: TestClient, session_factory: SessionFactory
) -> None:
    judge = bearer(session_factory, "judge")
    clerk = bearer(session_factory, "clerk")
    assert app_client.patch("/api/users/judge", json={"disabled": True}, headers=clerk).json()["disabled"] is True
    assert app_client.get("/api/auth/me", headers=judge).status_code == 401
    refused = app_client.post("/api/auth/login", json={"username": "judge", "password": PASSWORD})
    assert refused.status_code == 401


def test_no_plaintext_password_is_stored(app_client: TestClient, session_factory: SessionFactory) -> None:
    created = app_client.post(
        "/api/users",
        json={"username": "officer1", "password": "a long secret 123", "role": "officer"},
        headers=bearer(session_factory, "clerk"),
    )
    assert created.status_code == 201 and "password" not in created.text
    with session_factory() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "officer1"))
        dump = [tuple(row) for row in session.execute(select(User))]
    assert stored is not None and stored.startswith("$argon2id$")
    assert "a long secret 123" not in repr(dump)
    assert verify_password(stored, "a long secret 123") and not verify_password(stored, "a long secret 124")
    assert login(app_client, "officer1", "a long secret 123")["user"]["role"] == "officer"  # type: ignore[index]


def test_short_passwords_are_refused(app_client: TestClient, session_factory: SessionFactory) -> None:
    with pytest.raises(ValueError, match="12 characters"):
        hash_password("short")
    response = app_client.post(
        "/api/users",
        json={"username": "officer2", "password": "short", "role": "officer"},
        headers=bearer(session_factory, "clerk"),
    )
    assert response.status_code == 422


def test_change_own_password_ends_other_logins(app_client: TestClient, session_factory: SessionFactory) -> None:
    other = bearer(session_factory, "judge")
    mine = {"Authorization": f"Bearer {login(app_client)['access_token']}"}
    body = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    wrong = app_client.put("/api/users/me/password", json=body | {"current_password": "wrong one"}, headers=mine)
    assert wrong.status_code == 403
    assert app_client.put("/api/users/me/password", json=body, headers=mine).status_code == 204
    assert app_client.get("/api/auth/me", headers=mine).status_code == 200
    assert app_client.get("/api/auth/me", headers=other).status_code == 401
    assert login(app_client, "judge", "a brand new passphrase")["user"]["username"] == "judge"  # type: ignore[index]


def test_wrong_current_passwords_are_throttled_as_failed_logins(app_client: TestClient) -> None:
    """A stolen login guessing its user's password through the password change gets as many tries as a sign-in
    from its address (``login_max_failures``: 3 here), then 429 with Retry-After, the right password included."""
    mine = {"Authorization": f"Bearer {login(app_client)['access_token']}"}
    body = {"current_password": "wrong one", "new_password": "a brand new passphrase"}
    for _ in range(LIMITS["login_max_failures"]):
        assert app_client.put("/api/users/me/password", json=body, headers=mine).status_code == 403
    throttled = app_client.put("/api/users/me/password", json=body | {"current_password": PASSWORD}, headers=mine)
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["Retry-After"]) > 0
    assert app_client.post("/api/auth/login", json={"username": "judge", "password": PASSWORD}).status_code == 429


def test_logins_and_changes_are_audited(app_client: TestClient, session_factory: SessionFactory) -> None:
    login(app_client, "clerk")
    app_client.post("/api/cases", json={"case_no": "(2024)苏0214执3号"}, headers=CSRF)
    app_client.post("/api/auth/logout", headers=CSRF)
    assert audit_actions(session_factory) == [
        ("clerk", "login", "clerk"),
        ("clerk", "case.create", "(2024)苏0214执3号"),
        ("clerk", "logout", "clerk"),
    ]
    page = app_client.get("/api/audit", headers=bearer(session_factory, "clerk")).json()
    set_up = ["case.create", "court.create"]
    assert [e["action"] for e in page["entries"]] == ["logout", "case.create", "login", *set_up]
    judge_view = app_client.get("/api/audit", headers=bearer(session_factory, "judge"))
    assert judge_view.status_code == 403


def test_audit_log_is_append_only(app_client: TestClient, session_factory: SessionFactory) -> None:
    login(app_client, "clerk")
    for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with session_scope(session_factory) as session:
                session.execute(text(statement))
    assert audit_actions(session_factory) == [("clerk", "login", "clerk")]


def test_an_attempt_under_way_counts_against_a_parallel_one(session_factory: SessionFactory) -> None:
    """Two guesses at once with one failure allowed: the second is refused while the first is still being checked
    (a check before either had failed would let both through, and so on for any number of parallel guesses)."""
    limits = ThrottleLimits(pair_max=1, address_max=10, window_s=300, user_max=10, user_window_s=60, network_max=9)
    who = {"username": "judge", "client_ip": "10.0.0.1", "limits": limits}
    with session_factory() as first, session_factory() as second:
        attempt = begin_login_attempt(first, now=utc_now(), **who)  # type: ignore[arg-type]
        with pytest.raises(TooManyAttempts):
            begin_login_attempt(second, now=utc_now(), **who)  # type: ignore[arg-type]
        forget_login_attempt(first, attempt_id=attempt)  # the first had the right password
        first.commit()
        begin_login_attempt(second, now=utc_now(), **who)  # type: ignore[arg-type]
    with session_factory() as session:
        assert session.scalar(select(func.count(LoginFailure.id))) == 1


def test_password_checks_wait_for_a_free_slot() -> None:
    """At most MAX_CONCURRENT_HASHES argon2 computations (64 MiB each) run at once; the others wait their turn."""
    stored = hash_password(PASSWORD)
    done = threading.Event()
    for _ in range(MAX_CONCURRENT_HASHES):
        assert hashing_slots.acquire(timeout=5)
    try:
        thread = threading.Thread(target=lambda: verify_password(stored, PASSWORD) and done.set())
        thread.start()
        assert not done.wait(0.5)  # every slot is taken
    finally:
        for _ in range(MAX_CONCURRENT_HASHES):
            hashing_slots.release()
    assert done.wait(30)
    thread.join(10)


def test_a_hash_with_old_argon2_parameters_is_made_anew_at_sign_in(
    app_client: TestClient, session_factory: SessionFactory
) -> None:
    """Also for a password shorter than today's rule (set before it): before, the rehash checked the rules again and
    the sign-in failed with an error."""
    for username, password in [("officer1", PASSWORD), ("officer2", "old pass")]:
        old = add_user_with_old_hash(session_factory, username, password)
        assert login(app_client, username, password)["user"]["username"] == username  # type: ignore[index]
        new = stored_hash(session_factory, username)
        assert new is not None and new != old
        assert verify_password(new, password) and rehashed(new, password) is None
        assert login(app_client, username, password)["user"]["username"] == username  # type: ignore[index]
        assert stored_hash(session_factory, username) == new  # current parameters: kept


def test_the_rehash_at_sign_in_is_made_before_the_user_s_row_is_locked(
    pg_engine: Engine, session_factory: SessionFactory
) -> None:
    """The new hash is made with no transaction held; the transaction that locks the user's row (and on SQLite holds
    the database's write lock) only stores it. Before, argon2 ran in it, with every other writer of the row waiting.
    The pin holds the user's row until the sign-in waits for it (it has checked the password by then); then every
    hashing slot is taken: a sign-in that still had to hash, holding the row, would never finish."""
    old = add_user_with_old_hash(session_factory, "officer1", PASSWORD)
    factory = make_session_factory(pg_engine)

    def sign_in_officer() -> SignedIn:
        with factory() as session:
            return sign_in(session, username="officer1", password=PASSWORD, ip="203.0.113.9", settings=AuthSettings())

    with pg_engine.connect() as pin:
        pin.execute(text("SELECT 1 FROM users WHERE username = 'officer1' FOR NO KEY UPDATE"))
        signing_in = Side(sign_in_officer)
        wait_for_lock_waits(pg_engine, 1)
        for _ in range(MAX_CONCURRENT_HASHES):
            assert hashing_slots.acquire(timeout=5)
        try:
            pin.rollback()
            assert signing_in.join().user.username == "officer1"
        finally:
            for _ in range(MAX_CONCURRENT_HASHES):
                hashing_slots.release()
    new = stored_hash(session_factory, "officer1")
    assert new is not None and new != old and verify_password(new, PASSWORD) and rehashed(new, PASSWORD) is None
