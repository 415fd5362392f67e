"""A seal that cannot verify the court's own command (it pins another court key) refuses it with ``command_id``
null and the SHA-256 of the very bytes the court published: the court settles the command as refused, and the case
page says what happened — the seal refused it because it could not verify the court's signature — not "bad signature
(not the court's key)", which is a forged command's refusal and settles nothing."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from sqlalchemy import select

from seal_protocol import EventType
from seal_protocol.commands import CommandAction
from seal_protocol.signing import generate_signing_key
from server.auth.users import get_user
from server.commands.models import CourtCommand
from server.commands.service import issue_command
from server.core.base import utc_now
from server.core.db import session_scope
from server.seals.models import Seal
from tests.web.conftest import SEAL, PagesWorld, ping_form
from tests.web.test_case_pages import CASE_URL, HTMX


def _send_ping(world: PagesWorld) -> tuple[int, bytes]:
    with world.client("officer") as client:
        sent = client.post(
            f"{CASE_URL}/commands",
            data=ping_form(client),
            headers=HTMX,
        )
    [command_id] = re.findall(r'data-command-id="(\d+)"', sent.text)
    with world.session_factory() as session:
        signed = session.scalars(select(CourtCommand.signed).where(CourtCommand.id == int(command_id))).one()
    return int(command_id), signed


def _refuse(world: PagesWorld, command_id: int, refused: bytes) -> None:
    refusal = {
        "command_id": None,
        "claimed_command_id": command_id,
        "sha256": hashlib.sha256(refused).hexdigest(),
        "reason": "bad_signature",
        "detail": "not signed by the pinned court key",
    }
    world.ingest((world.seal.event_topic, world.seal.event(EventType.COMMAND_REJECTED, refusal)))


def _panels(world: PagesWorld) -> dict[str, str]:
    panels = {}
    with world.client("officer") as client:
        for lang in ("zh-CN", "en"):
            client.cookies.set("seal_lang", lang)
            panels[lang] = client.get(CASE_URL).text.split('<section id="case-commands"')[1].split("</section>")[0]
    return panels


def test_a_refusal_of_the_courts_own_command_the_seal_could_not_verify_says_so(world: PagesWorld) -> None:
    command_id, signed = _send_ping(world)
    _refuse(world, command_id, signed)
    panels = _panels(world)
    assert f'data-command-id="{command_id}" data-action="ping" data-state="rejected"' in panels["zh-CN"]
    assert "封条拒绝执行（封条无法验证法院签名）" in panels["zh-CN"] and "非本院密钥" not in panels["zh-CN"]
    assert "Refused by the seal: it could not verify the court&#39;s signature" in panels["en"]
    assert "not the court" not in panels["en"]


def test_a_refusal_of_forged_bytes_claiming_the_commands_id_settles_and_says_nothing(world: PagesWorld) -> None:
    command_id, _signed = _send_ping(world)
    _refuse(world, command_id, b"forged bytes claiming the command's id")
    panels = _panels(world)
    assert f'data-command-id="{command_id}" data-action="ping" data-state="pending"' in panels["zh-CN"]
    assert "封条无法验证法院签名" not in panels["zh-CN"]


def test_the_alarm_of_a_disarm_the_seal_could_not_verify_says_so(world: PagesWorld) -> None:
    """The disarm_failed alarm's note words the refusal as the commands' panel does."""
    with session_scope(world.session_factory) as session:
        disarm = issue_command(
            session,
            seal=session.scalars(select(Seal).where(Seal.device_id == SEAL)).one(),
            action=CommandAction.DISARM,
            args={},
            key=generate_signing_key(),  # a key the seal does not pin
            ttl=timedelta(minutes=10),
            user=get_user(session, username="judge"),
            now=utc_now(),
        )
        command_id, signed = disarm.id, disarm.signed
    _refuse(world, command_id, signed)
    with world.client("judge") as client:
        client.cookies.set("seal_lang", "zh-CN")
        page = client.get(CASE_URL).text
    alarms = page.split('<section id="case-alarms"')[1].split("</section>")[0]
    assert f'data-command-id="{command_id}"' in alarms
    assert "封条拒绝执行（封条无法验证法院签名）" in alarms and "非本院密钥" not in alarms
