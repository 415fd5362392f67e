"""A hostile caller against every route of the app, by class of attack: what the authorisation matrix
(``test_authz_matrix.py``) does not try — a cookie without the CSRF proof, a forged, ended, expired or disabled
session, a client that names its own address in a header, and the live stream of a page asked about someone else's
case. Each test walks the matrix's table (which must name every route of the app) or the registry of live views, so
a route or view added later without its check fails here.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from server.app import create_app
from server.audit.models import AuditEntry
from server.auth.access import Role
from server.auth.access_codes import issue_access_code
from server.auth.models import User
from server.auth.sessions import issue_session
from server.auth.users import get_user
from server.core.base import utc_now
from server.core.db import session_scope
from server.core.live import Change
from server.seals.models import Seal
from server.seals.registry import bind_seal, register_seal, unbind_seal
from server.web import live as live_module
from tests.server import test_authz_matrix as matrix
from tests.server.auth_helpers import PASSWORD, add_user, bearer, make_settings
from tests.server.test_authz_matrix import FINAL, FOREIGN, OWN, PAGES, TABLE, Row, World

world = matrix.world  # the matrix's world (two cases, a user per role on OWN) and its app
client = matrix.client

CSRF = {"X-Requested-With": "htmx"}
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def in_order() -> list[Row]:
    """The table's rows, those that close a case last (as the matrix runs them)."""
    return [row for row in TABLE if row not in FINAL] + FINAL


def acting_role(row: Row) -> Role:
    """A role that gets the row's ``ok`` on its own case (a clerk where allowed)."""
    if Role.CLERK in row.allowed:
        return Role.CLERK
    return next(role for role in Role if role in row.allowed and role not in row.redirected)


def cookie_of(world: World, username: str, *, ttl_s: int = 3600) -> str:
    with session_scope(world.session_factory) as session:
        user = get_user(session, username=username)
        return issue_session(session, user=user, now=utc_now(), ttl_s=ttl_s).cookie


def send(client: TestClient, world: World, row: Row, role: Role, headers: dict[str, str]) -> int:
    call = row.prepare(world, OWN)
    url = call.mine(role.value) if call.mine is not None else call.url
    response = client.request(
        row.method, url, json=call.json, data=call.data, files=call.files, headers=headers, follow_redirects=False
    )
    return response.status_code


# -- CSRF: a cookie-authenticated unsafe request without the header or the form's token ---------------------------


def test_a_cookie_without_the_csrf_proof_is_refused_on_every_unsafe_route(client: TestClient, world: World) -> None:
    wrong = []
    for row in in_order():
        if row.method not in UNSAFE or row.scope == "public":
            continue
        role = acting_role(row)
        client.cookies.clear()
        client.cookies.set("seal_session", cookie_of(world, role.value))
        status = send(client, world, row, role, {})
        if status != 403:
            wrong.append(f"{row.method} {row.path} as {role.value}: {status}")
    client.cookies.clear()
    assert wrong == []


def test_a_public_form_needs_the_csrf_proof_and_the_public_api_takes_only_json(client: TestClient) -> None:
    """The sign-in forms (a forged sign-in would put the victim in the attacker's account) check the proof; the
    API's sign-ins read JSON only, which a page on another site cannot send without a CORS preflight."""
    public_unsafe = {(row.method, row.path) for row in TABLE if row.scope == "public" and row.method in UNSAFE}
    pages = {(row.method, row.path) for row in PAGES}
    wrong = []
    for method, path in sorted(public_unsafe):
        if (method, path) in pages:
            status = client.request(method, path, data={"username": "clerk", "password": PASSWORD}).status_code
            if status != 403:
                wrong.append(f"{method} {path} without the proof: {status}")
        else:
            body = json.dumps({"username": "clerk", "password": PASSWORD, "case_no": OWN, "code": "X"})
            for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
                status = client.request(method, path, content=body, headers={"Content-Type": content_type}).status_code
                if status != 422:
                    wrong.append(f"{method} {path} as {content_type}: {status}")
    assert wrong == []


# -- forged and stale sessions ----------------------------------------------------------------------------------


def stale_credentials(world: World, role: Role, client: TestClient) -> dict[str, dict[str, str]]:
    """Ways of calling as nobody: each a cookie or header set that must not authenticate."""
    with session_scope(world.session_factory) as session:
        issued = issue_session(session, user=get_user(session, username=role.value), now=utc_now(), ttl_s=3600)
    ended = cookie_of(world, role.value)
    client.cookies.clear()
    assert client.post("/api/auth/logout", headers=CSRF | {"Cookie": f"seal_session={ended}"}).status_code == 204
    disabled = world.fresh(f"gone-{role.value}")
    add_user(world.session_factory, disabled, role, () if role is Role.CLERK else (OWN,))
    disabled_cookie = cookie_of(world, disabled)
    with session_scope(world.session_factory) as session:
        session.scalars(select(User).where(User.username == disabled)).one().disabled = True
    return {
        "forged cookie": {"Cookie": f"seal_session={secrets.token_urlsafe(32)}"},
        "logged-out cookie": {"Cookie": f"seal_session={ended}"},
        "expired cookie": {"Cookie": f"seal_session={cookie_of(world, role.value, ttl_s=-1)}"},
        "bearer token as a cookie": {"Cookie": f"seal_session={issued.token}"},
        "cookie as a bearer token": {"Authorization": f"Bearer {issued.cookie}"},
        "disabled user's cookie": {"Cookie": f"seal_session={disabled_cookie}"},
        "empty bearer": {"Authorization": "Bearer "},
    }


def test_a_forged_ended_expired_or_disabled_session_is_nobody_on_every_route(client: TestClient, world: World) -> None:
    wrong = []
    for row in in_order():
        if row.scope == "public":
            continue
        role = acting_role(row)
        for how, headers in stale_credentials(world, role, client).items():
            client.cookies.clear()
            status = send(client, world, row, role, headers | CSRF)
            if status != row.anonymous:
                wrong.append(f"{how}: {row.method} {row.path}: {status}, want {row.anonymous}")
    assert wrong == []


# -- the client's address: never from a header of the client's own --------------------------------------------

#: The routes that sign in (their failures are throttled by address and audited with it): the n-th attempt's
#: (JSON body, form) — a wrong password or code.
SIGN_INS: dict[tuple[str, str], Callable[[int], tuple[dict[str, str] | None, dict[str, str] | None]]] = {
    ("POST", "/api/auth/login"): lambda n: ({"username": f"judge{n}", "password": "a wrong guess!"}, None),
    ("POST", "/login"): lambda n: (None, {"username": f"judge{n}", "password": "a wrong guess!"}),
    ("POST", "/api/auth/access-code"): lambda n: ({"case_no": OWN, "code": f"AAAA-BBBB-CCCC-{n:04d}"}, None),
    ("POST", "/portal/login"): lambda n: (None, {"case_no": OWN, "code": f"AAAA-BBBB-CCCC-{n:04d}"}),
}
#: Headers a client may send to pass for someone else.
SPOOFS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "X-Client-IP")


@pytest.fixture
def throttled_app(database_url: str, tmp_path: Path, world: World) -> Iterator[TestClient]:
    """The app with a tight login throttle and no trusted proxy (the default)."""
    settings = make_settings(database_url, tmp_path, login_max_failures=3, login_address_max_failures=50)
    with TestClient(create_app(settings, with_ingest=False)) as instance:
        yield instance


def test_every_sign_in_counts_and_audits_the_socket_s_address_whatever_the_headers_say(
    throttled_app: TestClient, world: World
) -> None:
    """Headers a peer that is no trusted proxy sends are ignored: each sign-in route counts its socket's address."""
    public_unsafe = {(row.method, row.path) for row in TABLE if row.scope == "public" and row.method in UNSAFE}
    assert public_unsafe - {("POST", "/lang")} == set(SIGN_INS), "a public POST: is it a sign-in (add it here)?"
    for n, (key, request) in enumerate(SIGN_INS.items()):
        peer = f"198.51.100.{60 + n}"
        attacker = TestClient(throttled_app.app, client=(peer, 40000), follow_redirects=False)
        statuses = []
        for attempt in range(4):
            spoof = f"203.0.113.{attempt}"
            headers = dict.fromkeys(SPOOFS, spoof) | {"Forwarded": f"for={spoof}"}
            body, form = request(n)
            answer = attacker.request(key[0], key[1], json=body, data=form, headers=headers | CSRF)
            statuses.append(answer.status_code)
        assert statuses == [401, 401, 401, 429], key
    with world.session_factory() as session:
        query = select(AuditEntry.details).where(AuditEntry.action == "login.failed")
        addresses = {details["ip"] for details in session.scalars(query)}
    # judge<n> names no account (not audited); the case's code sign-ins are, each from its socket's address.
    assert addresses == {"198.51.100.62", "198.51.100.63"}


# -- the live stream: a subscriber hears nothing of a case it may not see -----------------------------------------

#: Per live view: the stream's parameters naming the foreign case's objects, and those naming the user's own.
LIVE_VIEWS = {
    "overview": ({}, {}),
    "case": ({"case_no": FOREIGN}, {"case_no": OWN}),
    "seal": ({"device_id": "seal-foreign"}, {"device_id": "seal-own"}),
    "portal_case": ({"case_no": FOREIGN}, {"case_no": OWN}),
    "creditor_case": ({"case_no": FOREIGN}, {"case_no": OWN}),
}


#: The page of each live view: the stream starts from what it showed (its ``since``).
PAGE_OF = {
    "overview": "/",
    "case": "/cases/{case_no}",
    "seal": "/seals/{device_id}",
    "portal_case": "/portal/cases/{case_no}",
    "creditor_case": "/creditor/cases/{case_no}",
}


def page_since(client: TestClient, world: World, role: Role, view: str, params: dict[str, str]) -> str:
    """What the view's page gives its stream as ``since``; where the role may not open that page, the live bus's
    position (sealed), as the overview gives it."""
    url = PAGE_OF[view].format(**{k: quote(v, safe="") for k, v in params.items()})
    page = client.get(url, headers=bearer(world.session_factory, role.value), follow_redirects=False)
    found = re.search(r'sse-connect="[^"]*since=([0-9a-f]+)"', page.text) if page.status_code == 200 else None
    hub = client.app.state.live  # type: ignore[attr-defined]
    return found.group(1) if found else str(hub.token(hub.position))


def stream(client: TestClient, world: World, role: Role, view: str, params: dict[str, str], since: object) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in {"view": view, **params}.items())
    response = client.get(f"/live?{query}&since={since}", headers=bearer(world.session_factory, role.value))
    assert response.status_code == 200, response.text
    return response.text


def foreign_streams(client: TestClient, world: World) -> dict[str, str]:
    """Every live view's stream, as each role assigned to OWN, with parameters naming the foreign case's objects and
    its own, after changes of the foreign case (an alarm among them): ``"<role> on <view> <params>"`` → its text."""
    assert set(live_module._VIEWS) == set(LIVE_VIEWS), "a live view without a row here"
    hub = client.app.state.live  # type: ignore[attr-defined]
    streams = [
        (role, view, params, page_since(client, world, role, view, params))
        for role in sorted(set(Role) - {Role.CLERK})
        for view, pair in LIVE_VIEWS.items()
        for params in pair
    ]
    world.alarms["new"] = world.new_alarm(FOREIGN)
    kinds = ("alarm", "event", "status", "snapshot", "command")
    hub.publish([Change(what, "seal-foreign", FOREIGN) for what in kinds] + [Change("removal", case_no=FOREIGN)])
    return {
        f"{role.value} on {view} {params}": stream(client, world, role, view, params, since)
        for role, view, params, since in streams
    }


def test_no_live_view_tells_a_user_anything_when_a_case_they_may_not_see_changes(
    client: TestClient, world: World
) -> None:
    """Not the change's content, and not even an update at the moment it happened (that something happened in
    another case, and when, is not the user's to learn)."""
    streams = foreign_streams(client, world)
    alarm = f"alarm-{world.alarms['new']}"
    heard = [
        f"{name}: {said!r}"
        for name, text in streams.items()
        for said in ("event: update", FOREIGN, "seal-foreign", alarm)
        if said in _beyond_the_clock(text)
    ]
    assert heard == []


def _beyond_the_clock(text: str) -> str:
    """``text`` without the updates that only the clock explains: a page shows how long ago a seal was heard from
    ("N s ago"), so its stream, started a second later, sends the seals again — whatever happened meanwhile."""
    moved = ('<section id="case-seals"', '<div id="seal-live"')
    kept = [
        block
        for block in text.split("\n\n")
        if not (
            block.startswith("event: update")
            and block.split("data: ", 1)[-1].startswith(moved)
            and block.count('hx-swap-oob="true"') == 1
        )
    ]
    return "\n\n".join(kept)


def test_a_live_view_naming_a_case_the_user_may_not_see_fails_nothing(
    client: TestClient, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The stream's parameters are the browser's to choose: one naming a case the user may not see ends with
    ``gap: access`` (the page reloads and refuses), as for a case that does not exist
    (tests/web/test_live_access_lost.py) — never a view's failure (a traceback and ``gap: error``)."""
    streams = foreign_streams(client, world)
    gaps = {line for text in streams.values() for line in text.splitlines() if line.startswith("data: ")}
    ended = [name for name, text in streams.items() if "event: gap" in text]
    assert ended, "no stream named anything its user may not see"
    assert all("event: gap\ndata: access" in streams[name] for name in ended), ended
    assert not any("data: error" in line for line in gaps)
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


def test_a_change_of_the_user_s_own_case_is_heard(client: TestClient, world: World) -> None:
    """The other side of the test above: the same streams do carry the user's own changes."""
    hub = client.app.state.live  # type: ignore[attr-defined]
    since = {view: page_since(client, world, Role.JUDGE, view, LIVE_VIEWS[view][1]) for view in LIVE_VIEWS}
    alarm_id = world.new_alarm(OWN)
    hub.publish([Change("alarm", "seal-own", OWN)])
    for view in ("overview", "case"):  # the seal page shows no alarms: it is sent nothing for one
        text = stream(client, world, Role.JUDGE, view, LIVE_VIEWS[view][1], since[view])
        assert "event: update" in text, view
    assert f"alarm-{alarm_id}" in stream(client, world, Role.JUDGE, "overview", {}, since["overview"])


# -- the overview's tiles: a seal shows only what its viewer may see of its past -------------------------------


@pytest.mark.parametrize("moved", [False, True], ids=["in-stock", "moved-to-own-case"])
def test_a_seal_s_tile_shows_nothing_of_a_former_case(client: TestClient, world: World, moved: bool) -> None:
    """seal-foreign took a picture and saw an intrusion for the foreign case, whose premises it guarded; unbound
    (stock, which an officer sees) or then bound to the user's own case with no place given, its tile must not show
    that picture, that event or those premises."""
    premises = "被执行人乙的仓库 B-warehouse"
    with session_scope(world.session_factory) as session:
        session.execute(update(Seal).where(Seal.device_id == "seal-foreign").values(location=premises))
        unbind_seal(session, actor=None, device_id="seal-foreign")
        if moved:
            bind_seal(session, actor=None, device_id="seal-foreign", case_no=OWN)
    page = client.get("/", headers=bearer(world.session_factory, "officer"))
    assert page.status_code == 200
    tile = page.text[page.text.index('id="seal-seal-foreign"') :].split("</article>")[0]
    assert world.snapshots[FOREIGN] not in tile and premises not in tile
    assert 'data-last-event=""' in tile  # not the foreign case's intrusion
    clerk = client.get("/", headers=bearer(world.session_factory, "clerk")).text
    clerk_tile = clerk[clerk.index('id="seal-seal-foreign"') :].split("</article>")[0]
    assert (world.snapshots[FOREIGN] in clerk_tile) is not moved  # the clerk sees the stock seal's past


def test_a_stock_seal_s_tile_shows_the_officer_his_own_case_s_past(client: TestClient, world: World) -> None:
    """The other side of the test above: back in stock, seal-own still shows an officer of its case that case's last
    event and picture (a filter that hid everything would pass the test above)."""
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-own")
    page = client.get("/", headers=bearer(world.session_factory, "officer"))
    tile = page.text[page.text.index('id="seal-seal-own"') :].split("</article>")[0]
    assert world.snapshots[OWN] in tile
    assert 'data-last-event=""' not in tile


# -- the debtor's access code: it opens its own case, whatever an administrator does to its account ------------


def test_an_access_code_account_cannot_be_given_another_case_a_role_or_a_password(
    client: TestClient, world: World
) -> None:
    """The paper code signs in as the case's code account: assigning that account another case, giving it another
    role or a password (by the API or the administration pages) would make case A's code open case B, or the court's
    screens. Each is refused (409), and the code still opens its own case only."""
    with session_scope(world.session_factory) as session:
        issued = issue_access_code(session, actor=None, case_no=OWN, now=utc_now())
    account, clerk = issued.username, bearer(world.session_factory, "clerk")
    attempts = {
        "page: assign another case": client.post(
            f"/admin/users/{account}/cases", data={"case_no": FOREIGN}, headers=clerk | CSRF
        ),
        "API: assign another case": client.post(
            f"/api/cases/{quote(FOREIGN, safe='')}/assignments", json={"username": account}, headers=clerk
        ),
        "API: another role": client.patch(f"/api/users/{account}", json={"role": "judge"}, headers=clerk),
        "API: a password": client.patch(f"/api/users/{account}", json={"password": PASSWORD}, headers=clerk),
    }
    assert {what: answer.status_code for what, answer in attempts.items()} == dict.fromkeys(attempts, 409)
    taken_off = client.delete(f"/api/cases/{quote(OWN, safe='')}/assignments/{account}", headers=clerk)
    assert taken_off.status_code == 204, taken_off.text  # then given the other case instead: refused too
    moved = client.post(f"/api/cases/{quote(FOREIGN, safe='')}/assignments", json={"username": account}, headers=clerk)
    assert moved.status_code == 409
    assert (
        client.post(
            f"/api/cases/{quote(OWN, safe='')}/assignments", json={"username": account}, headers=clerk
        ).status_code
        == 201
    )
    assert client.patch(f"/api/users/{account}", json={"role": "debtor"}, headers=clerk).status_code == 200
    signed_in = client.post("/api/auth/access-code", json={"case_no": OWN, "code": issued.code})
    assert signed_in.status_code == 200, signed_in.text
    debtor = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    client.cookies.clear()
    me = client.get("/api/auth/me", headers=debtor).json()
    assert me["role"] == "debtor" and me["case_nos"] == [OWN]
    assert client.get(f"/api/cases/{quote(FOREIGN, safe='')}", headers=debtor).status_code == 404
    assert client.post("/api/auth/login", json={"username": account, "password": PASSWORD}).status_code == 401


def test_an_alarm_of_a_former_case_does_not_name_where_its_seal_is_now(client: TestClient, world: World) -> None:
    """A live alarm of the user's case whose seal was since moved to another case: the alarm lists (the overview,
    the creditor's page) must not tell where that other case's premises are."""
    elsewhere = "被执行人乙的仓库 B-warehouse"
    with session_scope(world.session_factory) as session:
        unbind_seal(session, actor=None, device_id="seal-own")
        bind_seal(session, actor=None, device_id="seal-own", case_no=FOREIGN, location=elsewhere)
    pages = {
        "judge: /": client.get("/", headers=bearer(world.session_factory, "judge")),
        "creditor: case": client.get(
            f"/creditor/cases/{quote(OWN, safe='')}", headers=bearer(world.session_factory, "creditor")
        ),
    }
    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
    assert all(f'data-alarm-id="{world.alarms[OWN]}"' in page.text for page in pages.values())  # the alarm is shown
    assert [name for name, page in pages.items() if elsewhere in page.text] == []


@pytest.mark.parametrize("how", ["by hand", "by registration"])
def test_a_case_s_evidence_bundle_names_no_other_case_of_its_seals(client: TestClient, world: World, how: str) -> None:
    """seal-foreign was registered for the foreign case and moved to ours; seal-own moved from ours to the foreign
    case's premises — unbound and bound by hand, or registered again for the other case (whose notes on our case's
    own audit entries named the case it went to). Our case's bundle must tell neither the foreign case's number nor
    where its premises are."""
    elsewhere = "被执行人乙的仓库 B-warehouse"
    moves = (("seal-own", FOREIGN, elsewhere), ("seal-foreign", OWN, "本案 here"))
    with session_scope(world.session_factory) as session:
        for device_id, case_no, location in moves:
            if how == "by hand":
                unbind_seal(session, actor=None, device_id=device_id)
                bind_seal(session, actor=None, device_id=device_id, case_no=case_no, location=location)
            else:
                key = session.scalar(select(Seal.public_key).where(Seal.device_id == device_id))
                assert key is not None
                register_seal(
                    session, actor=None, device_id=device_id, case_no=case_no, public_key=key, location=location
                )
    answer = client.get(f"/api/cases/{quote(OWN, safe='')}/export.zip", headers=bearer(world.session_factory, "clerk"))
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        found = {
            (name, said)
            for name in bundle.namelist()
            for said in (FOREIGN, elsewhere)
            if said.encode() in bundle.read(name)
        }
    assert found == set()
