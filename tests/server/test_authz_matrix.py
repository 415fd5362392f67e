"""Who may call what: every route of the app × every role × the caller's own case and a foreign one.

The table below is written by hand from the product's rules, not derived from ``server.auth.access``: it is the
contract the policy must keep. Every route of the app must have a row (``test_every_route_has_a_row``), so a new
route cannot ship without deciding who may call it.

Scopes:
- ``public``: anyone, logged in or not, gets ``ok``;
- ``self``: any logged-in user gets ``ok`` (acts on their own login or account);
- ``global``: roles in ``allowed`` get ``ok``, other roles 403;
- ``case``: acts on one case's objects. A clerk gets ``ok`` on every case if in ``allowed`` (the removal workflow's
  acts — filing, views, the decision, the lifting — are the parties', the judge's and the officer's: 403 for a clerk);
  another role gets ``ok`` on its own case if in ``allowed``, else 403 — and 404 on a foreign case whatever its
  role, as if the case did not exist. A route reached by an object's own id (an alarm's, a command's) answers 404
  on the own case too to a role not in ``readers`` (who may not read such objects at all): ids are court-wide and
  sequential, and a 403 would tell that role the object exists in its case.
Nobody logged in gets 401 except on ``public`` routes — or, on a page (``PAGES``), ``303`` to the sign-in page. Pages
authenticate like the API (a cookie, or a bearer token as here) and decide access with the same policy.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import select
from starlette.routing import Mount

from seal_protocol import EventType, snapshot_topic
from seal_protocol.commands import CommandAction
from seal_protocol.signing import SigningKey, generate_signing_key, public_key_b64
from server.alarms.book import AlarmBook
from server.alarms.state import AlarmKind
from server.app import create_app
from server.audit.service import record_audit
from server.auth.access import Role
from server.auth.access_codes import access_code_of, issue_access_code
from server.auth.users import assign_case, get_user
from server.commands.service import issue_command
from server.config import RemovalSettings, WebSettings
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.core.metrics import IngestMetrics
from server.evidence.checkpoints import LogKey
from server.evidence.log import make_checkpoint
from server.evidence.models import Event, LogCheckpoint
from server.ingest.ingestor import Ingestor
from server.ingest.models import QuarantinedMessage
from server.notices.service import issue_notice
from server.notify.inbox import post_messages
from server.notify.targets import add_notification_target
from server.removal.disarm import approve_request, settle
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalDisarm, RemovalRequest
from server.removal.proofs import ProofStore, check_proof
from server.removal.service import file_request, review_request
from server.seals.cases import add_case, add_court
from server.seals.models import Seal
from server.seals.registry import add_seal, register_seal, unbind_seal
from server.web.form_ids import command_form_id, last_command_ids
from tests.server.auth_helpers import LOG_ORIGIN, PASSWORD, add_user, bearer, make_settings
from tests.server.helpers import COURT_CODE, COURT_NAME, COURT_PHONE, SimulatedSeal, jpeg_bytes, message, notice_facts
from tests.server.removal_world import pdf_bytes, picture_bytes

OWN, FOREIGN = "(2021)苏0214执1号", "(2021)苏0214执恢2号"
ROLES: list[Role | None] = [*Role, None]  # None: not logged in
ALL = frozenset(Role)
CLERK = frozenset({Role.CLERK})
COURT = frozenset({Role.CLERK, Role.JUDGE, Role.OFFICER})
DEBTOR = frozenset({Role.DEBTOR})
CREDITOR = frozenset({Role.CREDITOR})
_counter = itertools.count(1)


@dataclass
class World:
    session_factory: SessionFactory
    tmp_path: Path
    ingestor: Ingestor
    court_key: SigningKey = field(default_factory=generate_signing_key)
    requests: dict[str, int] = field(default_factory=dict)  # case -> a removal request with a proof
    proofs: dict[str, str] = field(default_factory=dict)  # case -> the sha256 of its request's proof
    inbox: dict[str, int] = field(default_factory=dict)  # username -> a message of theirs
    snapshots: dict[str, str] = field(default_factory=dict)  # case -> sha256
    alarms: dict[str, int] = field(default_factory=dict)  # case -> alarm id
    commands: dict[str, int] = field(default_factory=dict)  # case -> command id
    quarantined: int = 0  # id of a quarantined message
    events: dict[str, str] = field(default_factory=dict)  # case -> event_id of its event

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(_counter)}"

    def without_seals(self, case_no: str) -> str:
        """Unbind the case's seal (a case closes with none left); the case number, for the URL."""
        with session_scope(self.session_factory) as session:
            for seal in session.scalars(select(Seal).where(Seal.case_no == case_no)):
                unbind_seal(session, actor=None, device_id=seal.device_id)
        return c(case_no)

    def new_alarm(self, case_no: str) -> int:
        device_id = "seal-own" if case_no == OWN else "seal-foreign"
        with session_scope(self.session_factory) as session:
            book = AlarmBook(session, fold_window=timedelta(0))
            alarm = book.raise_alarm(AlarmKind.TAMPER, device_id=device_id, case_no=case_no, at=utc_now(), details={})
            session.flush()
            return alarm.id

    def new_target(self, case_no: str) -> int:
        with session_scope(self.session_factory) as session:
            url = f"https://{self.fresh('hook')}.example"
            return add_notification_target(session, case_no=case_no, role="judge", url=url).id

    def new_user(self, role: Role, cases: tuple[str, ...] = ()) -> str:
        username = self.fresh(role.value)
        add_user(self.session_factory, username, role, cases)
        return username

    def removal_case(self, case_no: str) -> tuple[str, SimulatedSeal]:
        """A fresh case with a seal: the own kind (every role's user assigned) or the foreign kind (nobody)."""
        new = f"(2023)苏0214执{next(_counter)}号"
        seal = SimulatedSeal(self.fresh("seal-r"), new)
        with session_scope(self.session_factory) as session:
            add_case(session, actor=None, case_no=new)
            register_seal(session, actor=None, device_id=seal.device_id, case_no=new, public_key=seal.public_key)
            if case_no == OWN:
                for role in ASSIGNABLE:
                    assign_case(session, user=get_user(session, username=role.value), case_no=new)
        return new, seal

    def removal_request(self, case_no: str, state: str) -> int:
        """A fresh request, on a fresh case of ``case_no``'s kind, in ``state`` (``waiting``: disarm_pending with
        its seal's disarm expired unanswered)."""
        new, seal = self.removal_case(case_no)
        now = utc_now()
        with session_scope(self.session_factory) as session:
            request = file_request(
                session,
                actor=get_user(session, username="debtor"),
                case_no=new,
                ground=RemovalGround.PAID_IN_FULL,
                statement="已清偿",
                proofs=[],
                store=ProofStore(self.tmp_path / "removal-proofs"),
                settings=RemovalSettings(),
                now=now,
            )
            judge = get_user(session, username="judge")
            if state != "submitted":
                review_request(session, actor=judge, request=request, note="", now=now)
            if state in ("disarm_pending", "waiting", "disarmed"):
                ttl, issued = timedelta(minutes=10), now - timedelta(hours=1 if state == "waiting" else 0)
                approve_request(
                    session, actor=judge, request=request, reasons="准予", key=self.court_key, ttl=ttl, now=issued
                )
            request_id, command_ids = request.id, [d.command_id for d in request.disarms]
        if state == "disarmed":
            for command_id in command_ids:
                ack = {"command_id": command_id, "action": "disarm", "result": "disarmed"}
                self.ingestor.ingest([message(seal.event_topic, seal.event(EventType.COMMAND_ACK, ack))])
            with session_scope(self.session_factory) as session:
                assert settle(session, request_id=request_id, now=utc_now())
        return request_id

    def request_and_seal(self, case_no: str, state: str) -> tuple[int, str]:
        """A fresh request in ``state`` (as :meth:`removal_request`) and the seal it disarms."""
        request_id = self.removal_request(case_no, state)
        with self.session_factory() as session:
            query = select(RemovalDisarm.device_id).where(RemovalDisarm.request_id == request_id)
            device_id = session.scalars(query).first()
        assert device_id is not None
        return request_id, device_id

    def new_notice(self, case_no: str) -> int:
        """A standing notice of the case's seal (signed with any key: revoking it checks no signature)."""
        with session_scope(self.session_factory) as session:
            issued = issue_notice(
                session,
                actor=None,
                device_id=seal_of(case_no),
                key=self.court_key,
                default_validity=timedelta(days=30),
                now=utc_now(),
            )
            return issued.notice.id

    def access_code(self) -> str:
        with session_scope(self.session_factory) as session:
            return issue_access_code(session, actor=None, case_no=OWN, now=utc_now(), rotate=True).code

    def code_to_replace(self, case_no: str) -> dict[str, str] | None:
        """What a rotation of the case's access code names (the time of its code), none for a first code."""
        with self.session_factory() as session:
            issued = access_code_of(session, case_no=case_no)
        return {"replacing": issued.issued_at.isoformat()} if issued is not None and issued.issued_at else None

    def form_id(self, username: str, case_no: str) -> str:
        """The one-use id of ``username``'s command form to the case's seal (signed in with a bearer token: no CSRF
        token), as their case page has it now."""
        with self.session_factory() as session:
            user = get_user(session, username=username)
            last = last_command_ids(session, user=user, device_ids=[seal_of(case_no)]).get(seal_of(case_no), 0)
        return command_form_id("", seal_of(case_no), last)

    def audit_entry(self, case_no: str) -> int:
        """A fresh audit entry of the case, in a signed checkpoint."""
        with session_scope(self.session_factory) as session:
            entry = record_audit(session, actor=None, action="case.note", target=case_no, case_no=case_no)
        with session_scope(self.session_factory) as session:
            make_checkpoint(session, LogKey(self.tmp_path / "log.key", LOG_ORIGIN))
        return entry.id

    def new_seal(self, case_no: str | None) -> str:
        device_id, key = self.fresh("seal"), public_key_b64(generate_signing_key())
        with session_scope(self.session_factory) as session:
            if case_no is None:
                add_seal(session, actor=None, device_id=device_id, public_key=key)
            else:
                register_seal(session, actor=None, device_id=device_id, case_no=case_no, public_key=key)
        return device_id


def c(case_no: str) -> str:
    return quote(case_no, safe="")


def without_ack(request_id: int, device_id: str) -> Call:
    return Call(
        f"/api/removal-requests/{request_id}/lift-without-ack", {"device_ids": [device_id], "reasons": "封条被毁"}
    )


@dataclass(frozen=True)
class Call:
    url: str
    json: dict[str, Any] | None = None
    data: dict[str, Any] | None = None  # a form, with files
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    mine: Callable[[str], str] | None = None  # the url of the caller's own object, by username
    form: Callable[[str], dict[str, Any]] | None = None  # the form as the caller's page has it, by username
    headers: dict[str, str] = field(default_factory=dict)


ASSIGNABLE = (Role.JUDGE, Role.OFFICER, Role.CREDITOR, Role.DEBTOR)


Prepare = Callable[[World, str], Call]  # (world, case number: own or foreign) -> the request


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    scope: str
    ok: int
    prepare: Prepare
    allowed: frozenset[Role] = ALL
    anonymous: int = 401  # what nobody logged in gets (on a page: 303 to the sign-in page)
    redirected: frozenset[Role] = frozenset()  # roles sent elsewhere (303) by a page that is not theirs
    readers: frozenset[Role] = ALL  # an object's id in the path: who may read it (others: 404, as for no object)


def fixed(url: str, json: dict[str, Any] | None = None) -> Prepare:
    return lambda _world, _case: Call(url, json)


def _consistency(world: World) -> Call:
    """The proof from the first signed checkpoint to the latest."""
    with world.session_factory() as session:
        sizes = session.scalars(select(LogCheckpoint.tree_size).order_by(LogCheckpoint.tree_size)).all()
    return Call(f"/api/log/consistency?old={sizes[0]}&new={sizes[-1]}")


def seal_of(case_no: str) -> str:
    return "seal-own" if case_no == OWN else "seal-foreign"


TABLE: list[Row] = [
    Row("GET", "/api/health", "public", 200, fixed("/api/health")),
    # Whoever signs in: the client decides ([http] metrics_from, this machine by default; TestClient's peer is no
    # address), tested in test_api.py.
    Row("GET", "/metrics", "public", 404, fixed("/metrics")),
    Row("GET", "/openapi.json", "public", 200, fixed("/openapi.json")),
    Row("GET", "/docs", "public", 200, fixed("/docs")),
    Row("GET", "/redoc", "public", 200, fixed("/redoc")),
    Row("GET", "/docs/static/{path}", "public", 200, fixed("/docs/static/swagger-ui/swagger-ui.css")),
    Row(
        "POST", "/api/auth/login", "public", 200, fixed("/api/auth/login", {"username": "clerk", "password": PASSWORD})
    ),
    Row("POST", "/api/auth/logout", "self", 204, fixed("/api/auth/logout")),
    Row("GET", "/api/auth/me", "self", 200, fixed("/api/auth/me")),
    Row(
        "PUT",
        "/api/users/me/password",
        "self",
        204,
        fixed("/api/users/me/password", {"current_password": PASSWORD, "new_password": PASSWORD}),
    ),
    Row("GET", "/api/users", "global", 200, fixed("/api/users"), CLERK),
    Row(
        "POST",
        "/api/users",
        "global",
        201,
        lambda w, _: Call("/api/users", {"username": w.fresh("new"), "password": PASSWORD, "role": "officer"}),
        CLERK,
    ),
    Row("GET", "/api/users/{username}", "global", 200, fixed("/api/users/judge"), CLERK),
    Row(
        "PATCH",
        "/api/users/{username}",
        "global",
        200,
        lambda w, _: Call(f"/api/users/{w.new_user(Role.OFFICER)}", {"disabled": True}),
        CLERK,
    ),
    Row("GET", "/api/audit", "global", 200, fixed("/api/audit"), CLERK),
    Row("GET", "/api/quarantine", "global", 200, fixed("/api/quarantine"), CLERK),
    Row("GET", "/api/quarantine/counts", "global", 200, fixed("/api/quarantine/counts"), CLERK),
    Row(
        "GET",
        "/api/quarantine/{message_id}",
        "global",
        200,
        lambda w, _: Call(f"/api/quarantine/{w.quarantined}"),
        CLERK,
    ),
    Row("GET", "/api/log/checkpoint", "public", 200, fixed("/api/log/checkpoint")),
    # A notice's QR code is read by anyone standing at the door: its page, its verdict and the key are public.
    Row("GET", "/notice/{token}", "public", 200, fixed("/notice/not-a-token")),
    Row("GET", "/api/notices/verify", "public", 200, fixed("/api/notices/verify?token=not-a-token")),
    Row("GET", "/api/notices/key", "public", 200, fixed("/api/notices/key")),
    Row("GET", "/api/log/key", "public", 200, fixed("/api/log/key")),
    # A checkpoint's time stamp and its TSA's chain are as public as the checkpoint (this world has no TSA: 404).
    Row("GET", "/api/log/checkpoint/timestamp", "public", 404, fixed("/api/log/checkpoint/timestamp")),
    Row("GET", "/api/log/checkpoint/timestamp/chain", "public", 404, fixed("/api/log/checkpoint/timestamp/chain")),
    # A consistency proof between signed checkpoints too: it checks a bundle against a checkpoint fetched here.
    Row("GET", "/api/log/consistency", "public", 200, lambda w, _: _consistency(w)),
    Row(
        "GET",
        "/api/log/inclusion/{event_id}",
        "case",
        200,
        lambda w, k: Call(f"/api/log/inclusion/{w.events[k]}"),
        COURT | {Role.CREDITOR},  # whoever reads the case's events
        readers=COURT | {Role.CREDITOR},
    ),
    Row(
        "GET",
        "/api/log/inclusion/audit/{audit_id}",
        "case",
        200,
        lambda w, k: Call(f"/api/log/inclusion/audit/{w.audit_entry(k)}"),
        frozenset({Role.CLERK, Role.JUDGE}),  # the case's judge, the clerk: who may export its evidence
        readers=frozenset({Role.CLERK, Role.JUDGE}),
    ),
    Row("GET", "/api/cases", "global", 200, fixed("/api/cases")),
    Row("GET", "/api/courts", "global", 200, fixed("/api/courts")),
    Row(
        "POST",
        "/api/courts",
        "global",
        201,
        lambda w, _: Call("/api/courts", {"code": f"京{1000 + next(_counter)}", "name": "某人民法院"}),
        CLERK,
    ),
    Row("GET", "/api/courts/{code}", "global", 200, fixed(f"/api/courts/{c('苏0214')}")),
    Row("PATCH", "/api/courts/{code}", "global", 200, fixed(f"/api/courts/{c('苏0214')}", {"phone": "0510-1"}), CLERK),
    Row(
        "POST",
        "/api/cases",
        "global",
        201,
        lambda w, _: Call("/api/cases", {"case_no": f"(2024)苏0214执{next(_counter)}号"}),
        CLERK,
    ),
    Row("GET", "/api/cases/{case_no}", "case", 200, lambda _, k: Call(f"/api/cases/{c(k)}")),
    Row("PATCH", "/api/cases/{case_no}", "case", 200, lambda _, k: Call(f"/api/cases/{c(k)}", {"address": "x"}), CLERK),
    Row(
        "GET",
        "/api/cases/{case_no}/events",
        "case",
        200,
        lambda _, k: Call(f"/api/cases/{c(k)}/events"),
        COURT | {Role.CREDITOR},
    ),
    Row("GET", "/api/cases/{case_no}/snapshots", "case", 200, lambda _, k: Call(f"/api/cases/{c(k)}/snapshots"), COURT),
    Row(
        "GET",
        "/api/cases/{case_no}/export.zip",
        "case",
        200,
        lambda _, k: Call(f"/api/cases/{c(k)}/export.zip"),
        frozenset({Role.CLERK, Role.JUDGE}),
    ),
    Row(
        "GET",
        "/api/cases/{case_no}/assignments",
        "case",
        200,
        lambda _, k: Call(f"/api/cases/{c(k)}/assignments"),
        CLERK,
    ),
    Row(
        "POST",
        "/api/cases/{case_no}/assignments",
        "case",
        201,
        lambda w, k: Call(f"/api/cases/{c(k)}/assignments", {"username": w.new_user(Role.OFFICER)}),
        CLERK,
    ),
    Row(
        "DELETE",
        "/api/cases/{case_no}/assignments/{username}",
        "case",
        204,
        lambda w, k: Call(f"/api/cases/{c(k)}/assignments/{w.new_user(Role.OFFICER, (k,))}"),
        CLERK,
    ),
    Row(
        "GET",
        "/api/cases/{case_no}/notification-targets",
        "case",
        200,
        lambda _, k: Call(f"/api/cases/{c(k)}/notification-targets"),
        CLERK,
    ),
    Row(
        "POST",
        "/api/cases/{case_no}/notification-targets",
        "case",
        201,
        lambda w, k: Call(
            f"/api/cases/{c(k)}/notification-targets",
            {"role": "judge", "url": f"https://{w.fresh('hook')}.example", "secret": "judge-secret-0123456789"},
        ),
        CLERK,
    ),
    Row(
        "DELETE",
        "/api/notification-targets/{target_id}",
        "case",
        204,
        lambda w, k: Call(f"/api/notification-targets/{w.new_target(k)}"),
        CLERK,
        readers=CLERK,
    ),
    Row("GET", "/api/seals", "global", 200, fixed("/api/seals")),
    Row(
        "POST",
        "/api/seals",
        "global",
        201,
        lambda w, _: Call(
            "/api/seals", {"device_id": w.fresh("seal"), "public_key": public_key_b64(generate_signing_key())}
        ),
        CLERK,
    ),
    Row(
        "POST",
        "/api/seals/{device_id}/mqtt-password",
        "case",
        200,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/mqtt-password"),
        CLERK,
    ),
    Row(
        "POST",
        "/api/seals/{device_id}/mqtt-disable",
        "case",
        204,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/mqtt-disable"),
        CLERK,
    ),
    Row("GET", "/api/seals/{device_id}", "case", 200, lambda _, k: Call(f"/api/seals/{seal_of(k)}")),
    Row("GET", "/api/seals/{device_id}/bindings", "case", 200, lambda _, k: Call(f"/api/seals/{seal_of(k)}/bindings")),
    Row(
        "GET",
        "/api/seals/{device_id}/notice.pdf",
        "case",
        200,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/notice.pdf"),
        COURT,  # the court's staff post the notice; the parties read its page
    ),
    Row(
        "GET",
        "/api/seals/{device_id}/enrolment",
        "case",
        200,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/enrolment"),
        COURT | {Role.CREDITOR},  # whoever reads the seal's events may check them against its key
    ),
    Row(
        "GET",
        "/api/seals/{device_id}/events",
        "case",
        200,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/events"),
        COURT | {Role.CREDITOR},
    ),
    Row(
        "PUT",
        "/api/seals/{device_id}/binding",
        "case",
        200,
        lambda w, k: Call(f"/api/seals/{w.new_seal(None)}/binding", {"case_no": k}),
        frozenset({Role.CLERK, Role.OFFICER}),
    ),
    Row(
        "DELETE",
        "/api/seals/{device_id}/binding",
        "case",
        204,
        lambda w, k: Call(f"/api/seals/{w.new_seal(k)}/binding"),
        frozenset({Role.CLERK, Role.OFFICER}),
    ),
    Row(
        "POST",
        "/api/seals/{device_id}/commands",
        "case",
        202,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/commands", {"action": "ping"}),
        COURT,
    ),
    # The seal's connection and the commands to it are not the debtor's to read (a jamming oracle).
    Row(
        "GET",
        "/api/seals/{device_id}/commands",
        "case",
        200,
        lambda _, k: Call(f"/api/seals/{seal_of(k)}/commands"),
        ALL - {Role.DEBTOR},
    ),
    Row(
        "GET",
        "/api/commands/{command_id}",
        "case",
        200,
        lambda w, k: Call(f"/api/commands/{w.commands[k]}"),
        ALL - {Role.DEBTOR},
        readers=ALL - {Role.DEBTOR},
    ),
    Row(
        "GET",
        "/api/snapshots/{sha256}",
        "case",
        200,
        lambda w, k: Call(f"/api/snapshots/{w.snapshots[k]}"),
        COURT,
        readers=COURT,  # the creditor reads the events naming a picture: not whether it arrived
    ),
    Row("GET", "/api/removal-grounds", "public", 200, fixed("/api/removal-grounds")),
    Row(
        "POST",
        "/api/auth/access-code",
        "public",
        200,
        lambda w, _: Call("/api/auth/access-code", {"case_no": OWN, "code": w.access_code()}),
    ),
    Row(
        "POST",
        "/api/cases/{case_no}/access-code",
        "case",
        201,
        lambda w, k: Call(f"/api/cases/{c(k)}/access-code", w.code_to_replace(k)),
        CLERK,
    ),
    Row(
        "GET",
        "/api/cases/{case_no}/access-code",
        "case",
        200,
        lambda _, k: Call(f"/api/cases/{c(k)}/access-code"),
        CLERK,
    ),
    Row(
        "POST",
        "/api/cases/{case_no}/removal-requests",
        "case",
        201,
        lambda w, k: Call(
            f"/api/cases/{c(w.removal_case(k)[0])}/removal-requests",
            data={"ground": "paid_in_full", "statement": "已清偿"},
            files=[("files", ("回单.png", picture_bytes("PNG"), "image/png"))],
        ),
        frozenset({Role.DEBTOR}),
    ),
    Row(
        "GET",
        "/api/cases/{case_no}/removal-requests",
        "case",
        200,
        lambda _, k: Call(f"/api/cases/{c(k)}/removal-requests"),
    ),
    Row(
        "GET",
        "/api/removal-requests/{request_id}",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.requests[k]}"),
    ),
    Row(
        "GET",
        "/api/removal-requests/{request_id}/proofs/{sha256}",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.requests[k]}/proofs/{w.proofs[k]}"),
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/cancel",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'submitted')}/cancel", {"note": "撤回"}),
        frozenset({Role.DEBTOR}),
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/views",
        "case",
        201,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'submitted')}/views", {"text": "同意"}),
        frozenset({Role.CREDITOR}),
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/review",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'submitted')}/review", {}),
        CLERK | {Role.JUDGE},
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/approve",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'under_review')}/approve", {"reasons": "准予"}),
        frozenset({Role.JUDGE}),
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/reject",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'under_review')}/reject", {"reasons": "驳回"}),
        frozenset({Role.JUDGE}),
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/resend-disarm",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'waiting')}/resend-disarm", {}),
        CLERK | {Role.JUDGE},
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/lift-without-ack",
        "case",
        200,
        lambda w, k: without_ack(*w.request_and_seal(k, "waiting")),
        frozenset({Role.JUDGE}),
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/abort",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'waiting')}/abort", {"reasons": "撤销准予"}),
        frozenset({Role.JUDGE}),
    ),
    Row(
        "POST",
        "/api/notices/{notice_id}/revoke",
        "case",
        200,
        lambda w, k: Call(f"/api/notices/{w.new_notice(k)}/revoke", {"note": "公告有误"}),
        CLERK,
        readers=COURT,  # who prints notices
    ),
    Row(
        "POST",
        "/api/removal-requests/{request_id}/lifted",
        "case",
        200,
        lambda w, k: Call(f"/api/removal-requests/{w.removal_request(k, 'disarmed')}/lifted", {"note": "已拆除"}),
        frozenset({Role.OFFICER}),
    ),
    Row("GET", "/api/me/inbox", "self", 200, fixed("/api/me/inbox")),
    Row(
        "POST",
        "/api/me/inbox/{message_id}/read",
        "self",
        200,
        lambda w, _: Call("/api/me/inbox/1/read", mine=lambda username: f"/api/me/inbox/{w.inbox[username]}/read"),
    ),
    Row("GET", "/api/alarms", "global", 200, fixed("/api/alarms"), COURT | {Role.CREDITOR}),
    Row(
        "GET",
        "/api/alarms/{alarm_id}",
        "case",
        200,
        lambda w, k: Call(f"/api/alarms/{w.alarms[k]}"),
        COURT | {Role.CREDITOR},
        readers=COURT | {Role.CREDITOR},
    ),
    Row(
        "POST",
        "/api/alarms/{alarm_id}/ack",
        "case",
        200,
        lambda w, k: Call(f"/api/alarms/{w.new_alarm(k)}/ack", {}),
        COURT,
        readers=COURT | {Role.CREDITOR},
    ),
    Row(
        "POST",
        "/api/alarms/{alarm_id}/close",
        "case",
        200,
        lambda w, k: Call(f"/api/alarms/{w.new_alarm(k)}/close", {"note": "false alarm"}),
        CLERK | {Role.JUDGE},
        readers=COURT | {Role.CREDITOR},
    ),
]

#: Other calls of routes above whose rules depend on the request: disarm and arm are decisions (judge, clerk).
#: Rows whose call changes the world for the rows after it: they run last.
FINAL: list[Row] = [
    Row(
        "PUT",
        "/api/cases/{case_no}/status",
        "case",
        200,
        lambda w, k: Call(f"/api/cases/{w.without_seals(k)}/status", {"status": "closed"}),
        CLERK,
    ),
]
#: The pages (server/web): the same policy, answered as pages. A page's POST without a bearer token needs the CSRF
#: proof (here the htmx header); with one it needs none, like the API.
PAGE = 303
HTMX = {"X-Requested-With": "htmx"}
PAGES: list[Row] = [
    Row("GET", "/static/{path}", "public", 200, fixed("/static/app.js")),
    Row("GET", "/login", "public", 200, fixed("/login")),
    Row(
        "POST",
        "/login",
        "public",
        303,
        lambda _w, _k: Call("/login", data={"username": "clerk", "password": PASSWORD}, headers=HTMX),
    ),
    Row("POST", "/lang", "public", 303, lambda _w, _k: Call("/lang", data={"lang": "en"}, headers=HTMX)),
    Row("GET", "/", "self", 200, fixed("/"), anonymous=PAGE, redirected=frozenset({Role.DEBTOR})),
    Row("GET", "/live", "self", 200, fixed("/live?view=overview"), anonymous=PAGE),
    Row("GET", "/account/password", "self", 200, fixed("/account/password"), anonymous=PAGE),
    Row(
        "POST",
        "/account/password",
        "self",
        200,
        lambda _w, _k: Call("/account/password", data={"current": PASSWORD, "new": PASSWORD, "repeat": PASSWORD}),
        anonymous=PAGE,
    ),
    Row("POST", "/logout", "self", 303, lambda _w, _k: Call("/logout", data={}), anonymous=PAGE),
    # The debtor's portal: its front door is open to all (the access code's form); the rest is the debtor's own case.
    Row("GET", "/portal", "global", 200, fixed("/portal"), DEBTOR, anonymous=200),
    Row(
        "POST",
        "/portal/login",
        "public",
        303,
        lambda w, _k: Call("/portal/login", data={"case_no": OWN, "code": w.access_code()}, headers=HTMX),
    ),
    Row("POST", "/portal/logout", "self", 303, lambda _w, _k: Call("/portal/logout", data={}), anonymous=PAGE),
    Row("GET", "/portal/cases/{case_no}", "case", 200, lambda _, k: Call(f"/portal/cases/{c(k)}"), DEBTOR, PAGE),
    Row(
        "POST",
        "/portal/cases/{case_no}/requests",
        "case",
        303,
        lambda w, k: Call(
            f"/portal/cases/{c(w.removal_case(k)[0])}/requests",
            data={"ground": "paid_in_full", "statement": "已清偿"},
            files=[("files", ("回单.png", picture_bytes("PNG"), "image/png"))],
        ),
        DEBTOR,
        PAGE,
    ),
    Row(
        "POST",
        "/portal/requests/{request_id}/cancel",
        "case",
        303,
        lambda w, k: Call(f"/portal/requests/{w.removal_request(k, 'submitted')}/cancel", data={"note": "撤回"}),
        DEBTOR,
        PAGE,
    ),
    # The creditor's view: their own case only.
    Row("GET", "/creditor", "global", 200, fixed("/creditor"), CREDITOR, anonymous=PAGE),
    Row("GET", "/creditor/cases/{case_no}", "case", 200, lambda _, k: Call(f"/creditor/cases/{c(k)}"), CREDITOR, PAGE),
    Row(
        "POST",
        "/creditor/requests/{request_id}/views",
        "case",
        303,
        lambda w, k: Call(f"/creditor/requests/{w.removal_request(k, 'submitted')}/views", data={"text": "同意"}),
        CREDITOR,
        PAGE,
    ),
    Row("GET", "/inbox", "self", 200, fixed("/inbox"), anonymous=PAGE),
    Row(
        "POST",
        "/inbox/{message_id}/read",
        "self",
        303,
        lambda w, _: Call("/inbox/1/read", data={}, mine=lambda username: f"/inbox/{w.inbox[username]}/read"),
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/alarms/{alarm_id}/ack",
        "case",
        303,
        lambda w, k: Call(f"/alarms/{w.new_alarm(k)}/ack", data={"note": "seen"}),
        COURT,
        anonymous=PAGE,
        readers=COURT | {Role.CREDITOR},
    ),
]


def case_url(w: World, k: str, state: str, action: str) -> str:
    """The case page's form of ``action`` on a fresh removal request in ``state`` (on a fresh case of k's kind)."""
    request_id = w.removal_request(k, state)
    with w.session_factory() as session:
        case_no = session.get(RemovalRequest, request_id).case_no  # type: ignore[union-attr]
    return f"/cases/{c(case_no)}/removal/{request_id}/{action}"


def page_without_ack(w: World, k: str) -> Call:
    """The case page's form lifting the seal of a fresh ``waiting`` request without its acknowledgement."""
    request_id, device_id = w.request_and_seal(k, "waiting")
    with w.session_factory() as session:
        case_no = session.get(RemovalRequest, request_id).case_no  # type: ignore[union-attr]
    url = f"/cases/{c(case_no)}/removal/{request_id}/lift-without-ack"
    return Call(url, data={"device_ids": device_id, "reasons": "封条损毁"})


def snapshot_url(w: World, k: str) -> str:
    """The dialog of a picture an event of a fresh case of k's kind names."""
    new, seal = w.removal_case(k)
    picture = jpeg_bytes(shade=next(_counter) % 200)
    sha = hashlib.sha256(picture).hexdigest()
    w.ingestor.ingest(
        [
            message(seal.event_topic, seal.event(EventType.SNAPSHOT_TAKEN, {"snapshots": [sha]})),
            message(snapshot_topic(seal.device_id, sha), picture),
        ]
    )
    with w.session_factory() as session:
        event_id = session.scalars(select(Event.id).where(Event.case_no == new)).one()
    return f"/cases/{c(new)}/events/{event_id}/snapshots/{sha}"


def closable_case(w: World, k: str) -> str:
    """A fresh case of k's kind whose seal was unbound again: it may be closed."""
    new, seal = w.removal_case(k)
    with session_scope(w.session_factory) as session:
        unbind_seal(session, actor=None, device_id=seal.device_id)
    return c(new)


EVENTS = COURT | {Role.CREDITOR}
#: The case page and its forms, the seal page, the audit log and the administration pages (server/web).
PAGES += [
    Row("GET", "/cases/{case_no}", "case", 200, lambda _, k: Call(f"/cases/{c(k)}"), ALL - {Role.DEBTOR}, PAGE),
    Row(
        "GET",
        "/cases/{case_no}/timeline",
        "case",
        200,
        lambda _, k: Call(f"/cases/{c(k)}/timeline?before=9"),
        EVENTS,
        PAGE,
    ),
    Row(
        "GET",
        "/cases/{case_no}/events/{event_id}/snapshots/{sha256}",
        "case",
        200,
        lambda w, k: Call(snapshot_url(w, k)),
        COURT,
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/alarms/{alarm_id}/ack",
        "case",
        303,
        lambda w, k: Call(f"/cases/{c(k)}/alarms/{w.new_alarm(k)}/ack", data={"note": "seen"}),
        COURT,
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/alarms/{alarm_id}/close",
        "case",
        303,
        lambda w, k: Call(f"/cases/{c(k)}/alarms/{w.new_alarm(k)}/close", data={"note": "false alarm"}),
        CLERK | {Role.JUDGE},
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/commands",
        "case",
        303,
        lambda w, k: Call(
            f"/cases/{c(k)}/commands",
            data={"device_id": seal_of(k), "action": "ping", "form_id": "0" * 32},
            form=lambda username: {"device_id": seal_of(k), "action": "ping", "form_id": w.form_id(username, k)},
        ),
        COURT,
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/review",
        "case",
        303,
        lambda w, k: Call(case_url(w, k, "submitted", "review"), data={"note": "受理"}),
        CLERK | {Role.JUDGE},
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/approve",
        "case",
        303,
        lambda w, k: Call(case_url(w, k, "under_review", "approve"), data={"reasons": "准予"}),
        frozenset({Role.JUDGE}),
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/reject",
        "case",
        303,
        lambda w, k: Call(case_url(w, k, "under_review", "reject"), data={"reasons": "驳回"}),
        frozenset({Role.JUDGE}),
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/resend",
        "case",
        303,
        lambda w, k: Call(case_url(w, k, "waiting", "resend"), data={}),
        CLERK | {Role.JUDGE},
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/lifted",
        "case",
        303,
        lambda w, k: Call(case_url(w, k, "disarmed", "lifted"), data={"note": "已拆除"}),
        frozenset({Role.OFFICER}),
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/lift-without-ack",
        "case",
        303,
        lambda w, k: page_without_ack(w, k),
        frozenset({Role.JUDGE}),
        anonymous=PAGE,
    ),
    Row(
        "POST",
        "/cases/{case_no}/removal/{request_id}/abort",
        "case",
        303,
        lambda w, k: Call(case_url(w, k, "waiting", "abort"), data={"reasons": "撤销准予"}),
        frozenset({Role.JUDGE}),
        anonymous=PAGE,
    ),
    Row("GET", "/seals/{device_id}", "case", 200, lambda _, k: Call(f"/seals/{seal_of(k)}"), ALL - {Role.DEBTOR}, PAGE),
    Row(
        "GET",
        "/seals/{device_id}/notice.pdf",
        "case",
        200,
        lambda _, k: Call(f"/seals/{seal_of(k)}/notice.pdf"),
        COURT,
        PAGE,
    ),
    Row("GET", "/audit", "global", 200, fixed("/audit?action=case.create"), CLERK, PAGE),
    Row("GET", "/admin/users", "global", 200, fixed("/admin/users"), CLERK, PAGE),
    Row(
        "POST",
        "/admin/users",
        "global",
        303,
        lambda w, _: Call("/admin/users", data={"username": w.fresh("new"), "password": PASSWORD, "role": "officer"}),
        CLERK,
        PAGE,
    ),
    Row(
        "POST",
        "/admin/users/{username}/disabled",
        "global",
        303,
        lambda w, _: Call(f"/admin/users/{w.new_user(Role.OFFICER)}/disabled", data={"disabled": "1"}),
        CLERK,
        PAGE,
    ),
    Row(
        "POST",
        "/admin/users/{username}/cases",
        "global",
        303,
        lambda w, _: Call(f"/admin/users/{w.new_user(Role.OFFICER)}/cases", data={"case_no": OWN}),
        CLERK,
        PAGE,
    ),
    Row(
        "POST",
        "/admin/users/{username}/cases/remove",
        "global",
        303,
        lambda w, _: Call(f"/admin/users/{w.new_user(Role.OFFICER, (OWN,))}/cases/remove", data={"case_no": OWN}),
        CLERK,
        PAGE,
    ),
    Row("GET", "/admin/cases", "global", 200, fixed("/admin/cases"), CLERK, PAGE),
    Row(
        "POST",
        "/admin/cases",
        "global",
        303,
        lambda _w, _k: Call("/admin/cases", data={"case_no": f"(2024)苏0214执{next(_counter)}号"}),
        CLERK,
        PAGE,
    ),
    Row(
        "POST",
        "/admin/cases/{case_no}/close",
        "case",
        303,
        lambda w, k: Call(f"/admin/cases/{closable_case(w, k)}/close", data={"note": "结案"}),
        CLERK,
        PAGE,
    ),
    Row(
        "POST",
        "/admin/cases/{case_no}/access-code",
        "case",
        200,
        lambda w, k: Call(f"/admin/cases/{c(k)}/access-code", data=w.code_to_replace(k)),
        CLERK,
        PAGE,
    ),
    Row("GET", "/admin/courts", "global", 200, fixed("/admin/courts"), CLERK, PAGE),
    Row(
        "POST",
        "/admin/courts",
        "global",
        303,
        lambda _w, _k: Call("/admin/courts", data={"code": f"京{1000 + next(_counter)}", "name": "某人民法院"}),
        CLERK,
        PAGE,
    ),
]

TABLE += PAGES
TABLE += FINAL

VARIANTS: list[Row] = [
    Row(
        "POST",
        "/api/seals/{device_id}/commands",
        "case",
        202,
        lambda _, k, action=action: Call(f"/api/seals/{seal_of(k)}/commands", {"action": action}),  # type: ignore[misc]
        allowed,
    )
    for action, allowed in [
        ("disarm", {Role.JUDGE}),
        ("arm", {Role.JUDGE}),
        ("test_warning", COURT),
        ("snapshot", COURT),
    ]
]


def expected(row: Row, role: Role | None, case_no: str) -> int:
    if row.scope == "public":
        return row.ok
    if role is None:
        return row.anonymous
    if role in row.redirected:
        return 303
    if row.scope == "self":
        return row.ok
    if row.scope == "global":
        return row.ok if role in row.allowed else 403
    assert row.scope == "case", row.scope
    if role is Role.CLERK:
        return row.ok if Role.CLERK in row.allowed else 403
    if case_no == FOREIGN or role not in row.readers:
        return 404
    return row.ok if role in row.allowed else 403


def app_routes(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, routers included (FastAPI nests included routers lazily); a mounted
    app (static files) as ``GET <mount>/{path}``."""
    pairs = set()
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            pairs.add(("GET", f"{route.path}/{{path}}"))
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                pairs.add((method, str(route.path).replace(":path}", "}")))
    return pairs


@pytest.fixture
def world(session_factory: SessionFactory, tmp_path: Path) -> World:
    """Two cases, each with a seal that has an event, a snapshot and an alarm; one user per role on OWN."""
    with session_scope(session_factory) as session:
        add_court(session, actor=None, code=COURT_CODE, name=COURT_NAME, phone=COURT_PHONE)
        add_case(session, actor=None, case_no=OWN, **notice_facts(OWN))  # every fact a notice prints
        add_case(session, actor=None, case_no=FOREIGN, **notice_facts(FOREIGN))
    own, foreign = SimulatedSeal("seal-own", OWN), SimulatedSeal("seal-foreign", FOREIGN)
    with session_scope(session_factory) as session:
        for seal in (own, foreign):
            register_seal(
                session, actor=None, device_id=seal.device_id, case_no=seal.case_no, public_key=seal.public_key
            )
    ingestor = Ingestor(session_factory, metrics=IngestMetrics(), snapshot_dir=tmp_path / "snapshots")
    world = World(session_factory, tmp_path, ingestor)
    for shade, seal in enumerate((own, foreign)):
        picture = jpeg_bytes(shade=shade)
        sha = hashlib.sha256(picture).hexdigest()
        ingestor.ingest(
            [
                message(seal.event_topic, seal.event(EventType.INTRUSION, {"snapshots": [sha]})),  # as a seal's does
                message(snapshot_topic(seal.device_id, sha), picture),
            ]
        )
        world.snapshots[seal.case_no] = sha
        world.alarms[seal.case_no] = world.new_alarm(seal.case_no)
    for role in Role:
        add_user(session_factory, role.value, role, () if role is Role.CLERK else (OWN,))
    court_key = generate_signing_key()
    # Each kind's readable request is on a case of its own: an open request holds its case, whose seals the rows
    # below unbind and which the last row closes.
    requested = {case_no: world.removal_case(case_no)[0] for case_no in (OWN, FOREIGN)}
    with session_scope(session_factory) as session:
        clerk = get_user(session, username="clerk")
        for device_id, case_no in (("seal-own", OWN), ("seal-foreign", FOREIGN)):
            row = session.scalars(select(Seal).where(Seal.device_id == device_id)).one()
            command = issue_command(
                session,
                seal=row,
                action=CommandAction.PING,
                args={},
                key=court_key,
                ttl=timedelta(minutes=10),
                user=clerk,
                now=utc_now(),
            )
            world.commands[case_no] = command.id
        refused = QuarantinedMessage(
            received_at=utc_now(),
            topic="seal/v1/seal-own/events",
            device_id="seal-own",
            reason="invalid_json",
            size=3,
            raw=b"{{{",
        )
        session.add(refused)
        session.flush()
        world.quarantined = refused.id
        world.events = {e.case_no: e.event_id for e in session.scalars(select(Event))}
        make_checkpoint(session, LogKey(tmp_path / "log.key", LOG_ORIGIN))  # the key make_settings names
        for case_no, shade in ((OWN, 1), (FOREIGN, 2)):  # a removal request with a proof, per case
            receipt = check_proof(pdf_bytes(str(shade)), filename="r.pdf", declared_type="", max_bytes=2**20)
            request = file_request(
                session,
                actor=get_user(session, username="debtor"),
                case_no=requested[case_no],
                ground=RemovalGround.PAID_IN_FULL,
                statement="已清偿",
                proofs=[receipt],
                store=ProofStore(tmp_path / "removal-proofs"),  # the proof_dir of make_settings
                settings=RemovalSettings(),
                now=utc_now(),
            )
            world.requests[case_no], world.proofs[case_no] = request.id, receipt.sha256
        for role in Role:
            user = get_user(session, username=role.value)
            [row] = post_messages(
                session, user_ids=[user.id], kind="test", case_no=OWN, text_zh="测试", text_en="test", now=utc_now()
            )
            world.inbox[user.username] = row.id
    return world


@pytest.fixture
def client(database_url: str, world: World, tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(database_url, tmp_path)
    # A page's live stream ends at once here (a browser would reconnect): its row is answered, not held open.
    settings = settings.model_copy(update={"web": WebSettings(stream_max_s=0.05, heartbeat_s=0.05)})
    with TestClient(create_app(settings, with_ingest=False)) as instance:
        yield instance


def test_every_route_has_a_row(client: TestClient) -> None:
    table = {(row.method, row.path) for row in TABLE}
    assert len(table) == len(TABLE), "a route has two rows"
    routes = app_routes(client.app)
    assert routes - table == set(), "routes without a row in the authorisation table"
    assert table - routes == set(), "rows for routes the app does not have"


@pytest.mark.parametrize("role", ROLES, ids=[r.value if r else "anonymous" for r in ROLES])
def test_authorisation_matrix(client: TestClient, world: World, role: Role | None) -> None:
    mismatches = []
    for row in [row for row in TABLE if row not in FINAL] + VARIANTS + FINAL:
        for case_no in (OWN, FOREIGN):
            call = row.prepare(world, case_no)
            headers = bearer(world.session_factory, role.value) if role is not None else {}
            url = call.mine(role.value) if call.mine is not None and role is not None else call.url
            response = client.request(
                row.method,
                url,
                json=call.json,
                data=call.form(role.value) if call.form is not None and role is not None else call.data,
                files=call.files,
                headers=headers | call.headers,
                follow_redirects=False,
            )
            client.cookies.clear()
            want = expected(row, role, case_no)
            if response.status_code != want:
                where = "own" if case_no == OWN else "foreign"
                mismatches.append(f"{row.method} {row.path} ({where}): {response.status_code}, want {want}")
    assert mismatches == []


def test_a_foreign_case_looks_like_no_case(client: TestClient, world: World) -> None:
    headers = bearer(world.session_factory, "judge")
    foreign = client.get(f"/api/cases/{c(FOREIGN)}/events", headers=headers)
    absent = client.get(f"/api/cases/{c('(1999)无此案号')}/events", headers=headers)
    assert foreign.status_code == absent.status_code == 404
    assert foreign.json()["detail"].replace(FOREIGN, "X") == absent.json()["detail"].replace("(1999)无此案号", "X")
    seal = client.get("/api/seals/seal-foreign", headers=headers).json()["detail"]
    assert seal == client.get("/api/seals/no-such-seal", headers=headers).json()["detail"].replace(
        "no-such-seal", "seal-foreign"
    )
