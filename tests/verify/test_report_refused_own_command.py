"""The evidence report words a seal's refusal of the court's own command that it could not verify (``command_id``
null, the ``sha256`` of the very bytes the court published: the court settled it as refused) as what happened,
Chinese first — in the commands' table and in the timeline — and a refusal of forged bytes claiming a command's id
as unverified, settling nothing."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.auth.access import Role
from server.auth.users import get_user
from server.commands.service import issue_command
from server.core.base import utc_now
from server.core.db import SessionFactory, session_scope
from server.seals.models import Seal
from tests.server.auth_helpers import add_user
from tests.server.helpers import CASE_A
from tests.server.test_report_pdf import pdf_text
from tests.verify.world import CourtWorld, build_world, read_members


@pytest.fixture
def world(session_factory: SessionFactory, database_url: str, tmp_path: Path) -> CourtWorld:
    return build_world(session_factory, database_url, tmp_path)


def _issue_ping(world: CourtWorld) -> tuple[int, bytes]:
    with session_scope(world.session_factory) as session:
        command = issue_command(
            session,
            seal=session.scalars(select(Seal).where(Seal.device_id == "seal-a1")).one(),
            action=CommandAction.PING,
            args={},
            key=generate_signing_key(),  # a key the seal does not pin: it cannot verify the command
            ttl=timedelta(minutes=10),
            user=get_user(session, username="judge-a"),
            now=utc_now(),
        )
        return command.id, command.signed


def _refusal(command_id: int, refused: bytes) -> dict[str, object]:
    return {
        "command_id": None,
        "claimed_command_id": command_id,
        "sha256": hashlib.sha256(refused).hexdigest(),
        "reason": "bad_signature",
        "detail": "not signed by the pinned court key",
    }


def test_the_report_says_the_seal_refused_the_courts_own_command_it_could_not_verify(
    world: CourtWorld, tmp_path: Path
) -> None:
    add_user(world.session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    own, signed = _issue_ping(world)
    forged, _ = _issue_ping(world)
    world.send("a1", EventType.COMMAND_REJECTED, _refusal(own, signed))
    world.send("a1", EventType.COMMAND_REJECTED, _refusal(forged, b"forged bytes claiming the id"))
    members = read_members(world.export(CASE_A, tmp_path / "case.zip").path)
    states = {c["id"]: (c["state"], c["reason"]) for c in map(json.loads, members["commands.jsonl"].splitlines())}
    assert states == {own: ("rejected", "bad_signature"), forged: ("pending", None)}
    text = re.sub(r"\s+", "", pdf_text(members["report.pdf"]))
    commands = text.split("指令与应答")[-1].split("解除查封申请与决定")[0]
    assert "封条拒绝执行（封条无法验证法院签名）" in commands, commands
    assert "Refusedbytheseal:itcouldnotverifythecourt'ssignature" in commands
    assert "非本院密钥" not in commands and "notthecourt'skey" not in commands
    assert f"指令{own}：封条拒绝执行（封条无法验证法院签名）" in text  # the timeline's refusal event
    assert f"未经验证的指令（自称{own}）" not in text
    assert f"未经验证的指令（自称{forged}）" in text  # forged bytes: nobody's word, settles nothing
