"""An object reached by its own id tells a caller who may not read it nothing — not even that it exists.

Alarm, command, audit entry and notice ids are court-wide and sequential: a debtor who polls the next one must get
the same answer before and after it is created in their case (an ``offline`` alarm would tell them that jamming
their seal worked). And on every route whose path names an object, a debtor or creditor who may not read that
object gets word for word the answer an id naming nothing gets.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from seal_protocol.commands import CommandAction
from server.alarms.book import AlarmBook
from server.alarms.models import Alarm
from server.alarms.state import AlarmKind
from server.audit.models import AuditEntry
from server.audit.service import record_audit
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.core.base import utc_now
from server.core.db import session_scope
from server.notices.models import Notice
from server.seals.models import Seal
from tests.server import test_authz_matrix as matrix
from tests.server.auth_helpers import bearer
from tests.server.test_authz_matrix import FINAL, OWN, TABLE, VARIANTS, Call, Role, Row, World

world, client = matrix.world, matrix.client  # the matrix's fixtures: its two cases, a user of each role on one

#: Path parameters naming a case or a seal (which a party of the case sees anyway), or no object of a case.
NOT_OBJECTS = {"case_no", "device_id", "username", "code", "token", "path"}


def _absent(value: str) -> str:
    """An id of the shape of ``value`` (a row id, a UUID, a SHA-256) that names nothing."""
    if value.isdigit():
        return "987654321"
    return "00000000-0000-4000-8000-000000000000" if len(value) == 36 else "0" * len(value)


#: Who reads the objects of each kind (by the path's first object parameter), written from the product's rules: only
#: they may be told 403 for an act on one they may not do. A snapshot's picture is the court's; the creditor reads
#: the case's alarms, commands and events, the debtor none of them; both read removal requests and their proofs.
COURT = frozenset({Role.CLERK, Role.JUDGE, Role.OFFICER})
READS = {
    "alarm_id": COURT | {Role.CREDITOR},
    "command_id": COURT | {Role.CREDITOR},
    "event_id": COURT | {Role.CREDITOR},
    "request_id": frozenset(Role),
    "sha256": COURT,
    "notice_id": COURT,
}


def _answer(
    client: TestClient, world: World, role: str, method: str, url: str, call: Call | None = None
) -> httpx.Response:
    """``role``'s answer to ``method url``, with ``call``'s body and headers (else a note)."""
    body: dict[str, Any] = {"json": {"note": "n"}} if call is None else {"json": call.json, "data": call.data}
    files, headers = (None, {}) if call is None else (call.files, call.headers)
    response = client.request(
        method, url, **body, files=files, headers=bearer(world.session_factory, role) | headers, follow_redirects=False
    )
    client.cookies.clear()
    return response


def _next_id(world: World, model: type[Alarm | CourtCommand | AuditEntry | Notice]) -> int:
    with world.session_factory() as session:
        return (session.scalar(select(func.max(model.id))) or 0) + 1


def _create_in_own_case(world: World) -> tuple[int, int, int, int]:
    """An offline alarm of the debtor's seal, a command to it, an audit entry and a notice of their case: the ids."""
    with session_scope(world.session_factory) as session:
        book = AlarmBook(session, fold_window=timedelta(0))
        alarm = book.raise_alarm(AlarmKind.OFFLINE, device_id="seal-own", case_no=OWN, at=utc_now(), details={})
        command = issue_command(
            session,
            seal=session.scalars(select(Seal).where(Seal.device_id == "seal-own")).one(),
            action=CommandAction.PING,
            args={},
            key=world.court_key,
            ttl=timedelta(minutes=5),
            user=get_user(session, username="officer"),
            now=utc_now(),
        )
        entry = record_audit(session, actor=None, action="case.note", target=OWN, case_no=OWN)
        session.flush()
        ids = alarm.id, command.id, entry.id
    return (*ids, world.new_notice(OWN))


def test_polling_the_next_ids_tells_nothing_of_objects_created_in_ones_case(client: TestClient, world: World) -> None:
    alarm, command, audit, notice = (_next_id(world, model) for model in (Alarm, CourtCommand, AuditEntry, Notice))
    of_objects_they_may_not_read = {
        "debtor": [
            ("GET", f"/api/alarms/{alarm}"),
            ("POST", f"/api/alarms/{alarm}/ack"),
            ("POST", f"/api/alarms/{alarm}/close"),
            ("POST", f"/alarms/{alarm}/ack"),
            ("GET", f"/api/commands/{command}"),
            ("GET", f"/api/log/inclusion/audit/{audit}"),
            ("POST", f"/api/notices/{notice}/revoke"),
        ],
        "creditor": [("GET", f"/api/log/inclusion/audit/{audit}"), ("POST", f"/api/notices/{notice}/revoke")],
    }
    before = {
        (role, probe): _answer(client, world, role, *probe)
        for role, probes in of_objects_they_may_not_read.items()
        for probe in probes
    }
    assert {response.status_code for response in before.values()} == {404}
    assert _create_in_own_case(world) == (alarm, command, audit, notice)
    for (role, probe), earlier in before.items():
        now = _answer(client, world, role, *probe)
        assert (now.status_code, now.text) == (earlier.status_code, earlier.text), (role, probe)


def _object_params(row: Row) -> list[int]:
    """The positions (path segments) of the row's path parameters that name an object."""
    return [
        i for i, part in enumerate(row.path.split("/")) if part.startswith("{") and part.strip("{}") not in NOT_OBJECTS
    ]


ROWS = [row for row in TABLE if row not in FINAL] + VARIANTS + FINAL
ID_ROWS = [row for row in ROWS if _object_params(row)]


def test_the_routes_reached_by_an_objects_id_are_those_expected() -> None:
    paths = {row.path for row in ID_ROWS}
    for kind in ("alarm_id", "command_id", "audit_id", "event_id", "notice_id", "target_id", "request_id", "sha256"):
        assert any(f"{{{kind}}}" in path for path in paths), kind
    assert len(paths) >= 30, sorted(paths)


def _normalised(response: httpx.Response, ids: list[str]) -> tuple[int, str]:
    text = response.text
    for value in ids:
        text = re.sub(rf"(?<![\w.=:-]){re.escape(value)}(?![\w.-])", "<id>", text)  # not in "scale=1"
    return response.status_code, text


@pytest.mark.parametrize("role", [Role.DEBTOR, Role.CREDITOR], ids=str)
def test_no_permission_answers_as_no_such_object(client: TestClient, world: World, role: Role) -> None:
    """Every route with an object's id: the caller's own-case object they may not read (nor act on) is answered as
    an id naming nothing is. Only a role that reads such objects may be told 403 for an act it may not do."""
    mismatches, compared = [], []
    for row in ID_ROWS:
        call = row.prepare(world, OWN)
        url = call.url.split("?")[0]  # a self row's url: another user's object
        parts = url.split("/")
        positions = _object_params(row)
        names = [row.path.split("/")[i].strip("{}") for i in positions]
        absent = list(parts)
        for i in positions:
            absent[i] = _absent(parts[i])
        own = _answer(client, world, role.value, row.method, url, call)
        if own.status_code == row.ok or (own.status_code == 403 and role in READS.get(names[0], ())):
            continue
        none = _answer(client, world, role.value, row.method, "/".join(absent), call)
        compared.append(row.path)
        want = _normalised(none, [absent[i] for i in positions])
        if _normalised(own, [parts[i] for i in positions]) != want:
            mismatches.append(f"{row.method} {row.path}: {own.status_code} {own.text[:90]!r}, want {want[0]}")
    assert mismatches == []
    assert len(compared) >= 5, compared
