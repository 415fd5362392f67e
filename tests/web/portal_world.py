"""The portal's and the creditor's page tests' world, on top of :func:`tests.web.conftest.world`: the debtor's
access code of :data:`CASE`, a sealed :data:`OTHER_CASE` with its own seal, debtor and creditor and a request filed
there, and the steps of a request taken through the services (as the judge's pages or the API would)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from fastapi.testclient import TestClient
from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.signing import generate_signing_key
from server.auth.access import Role
from server.auth.access_codes import issue_access_code
from server.auth.users import get_user
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.db import session_scope
from server.core.files import DirectoryObjects
from server.removal.disarm import approve_request
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalRequest
from server.removal.proofs import ProofStore
from server.removal.service import file_request, review_request
from server.removal.steps import get_request
from server.seals.registry import register_seal
from tests.server.auth_helpers import add_user
from tests.server.helpers import SimulatedSeal
from tests.web.conftest import CASE, OTHER_CASE, PagesWorld, SignedInClient, csrf_of

OTHER_SEAL = "seal-web-2"
HTMX = {"X-Requested-With": "htmx", "HX-Request": "true"}


def q(case_no: str) -> str:
    return quote(case_no, safe="")


@dataclass
class Portal:
    world: PagesWorld
    code: str  # the access code of CASE
    other_request: int  # a request filed on OTHER_CASE by its own debtor

    def code_client(self, case_no: str = CASE, code: str | None = None) -> TestClient:
        """A client signed in through the portal's form with the access code (started: use ``with``)."""
        client = SignedInClient(self.world.app, follow_redirects=False)
        client.__enter__()
        token = csrf_of(client.get(f"/portal?case_no={q(case_no)}").text)
        answer = client.post("/portal/login", data={"case_no": case_no, "code": code or self.code, "csrf_token": token})
        assert answer.status_code == 303, answer.text
        return client

    def file(self, username: str = "debtor", case_no: str = CASE) -> int:
        """A request filed through the service (no proofs), as the debtor ``username``."""
        with session_scope(self.world.session_factory) as session:
            request = file_request(
                session,
                actor=get_user(session, username=username),
                case_no=case_no,
                ground=RemovalGround.PAID_IN_FULL,
                statement="已全部清偿。",
                proofs=[],
                store=ProofStore(DirectoryObjects(Path("unused"))),  # never written: no proofs
                settings=RemovalSettings(),
                now=utc_now(),
            )
            session.flush()
            return request.id

    def approve(self, request_id: int) -> dict[str, int]:
        """The judge takes it up and approves: the disarm's command id per seal."""
        with session_scope(self.world.session_factory) as session:
            request = get_request(session, request_id=request_id)
            judge = get_user(session, username="judge" if request.case_no == CASE else "other-judge")
            review_request(session, actor=judge, request=request, note="受理", now=utc_now())
            approve_request(
                session,
                actor=judge,
                request=request,
                reasons="债务已清偿",
                key=generate_signing_key(),
                ttl=timedelta(minutes=10),
                now=utc_now(),
            )
            session.flush()
            return {d.device_id: d.command_id for d in request.disarms}

    def acknowledge(self, command_id: int) -> None:
        """The seal's signed answer to the disarm, stored by the ingest (and published after its commit)."""
        seal = self.world.seal
        ack = {"command_id": command_id, "action": "disarm", "result": "disarmed"}
        self.world.ingest((seal.event_topic, seal.event(EventType.COMMAND_ACK, ack)))

    def state(self, request_id: int) -> str:
        with self.world.session_factory() as session:
            return session.scalars(select(RemovalRequest.state).where(RemovalRequest.id == request_id)).one()


def make_portal(world: PagesWorld) -> Portal:
    with session_scope(world.session_factory) as session:
        code = issue_access_code(session, actor=None, case_no=CASE, now=utc_now()).code
        other = SimulatedSeal(OTHER_SEAL, OTHER_CASE)
        register_seal(session, actor=None, device_id=OTHER_SEAL, case_no=OTHER_CASE, public_key=other.public_key)
    add_user(world.session_factory, "other-debtor", Role.DEBTOR, (OTHER_CASE,))
    add_user(world.session_factory, "other-creditor", Role.CREDITOR, (OTHER_CASE,))
    portal = Portal(world, code, 0)
    portal.other_request = portal.file("other-debtor", OTHER_CASE)
    return portal
