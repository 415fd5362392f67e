"""Command ids the court gave twice: its ids went back (a restored backup, a failover to an asynchronous replica that
lost commits), and a new command reuses an id the seal had already accepted for another command.

The seal refuses such a command ``replayed`` (its id is not above the last one it accepted) and never carries it
out. Its refusal signs the ``sha256`` of the bytes it refused and its ``last_accepted_id``
(:func:`seal_protocol.commands.refusal_payload`): the same bytes as the command row's are a delivery again of a
command the seal accepted (its own answer decides, :func:`~server.commands.service.apply_answer`); other bytes are
this id reused (:func:`reused_id`), and the command is settled ``rejected`` (reason ``replayed``) with the court's
explanation (:data:`REUSED_NOTE`, the result's ``court_detail``). A refusal without ``sha256`` (a seal older than
this rule) cannot tell: it keeps the older meaning.

So that the court's next commands are obeyed again, its ids then climb above the seal's ``last_accepted_id``
(:func:`advance_ids`, :func:`next_command_id`), by at most :data:`MAX_ID_JUMP` above the refused command's id (a
seal's word alone does not exhaust the ids: a larger gap is logged, and docs/deploy.md gives the command).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from seal_protocol.commands import RejectReason
from server.commands.models import CourtCommand
from server.commands.refusals import same_sha256, signed_sha256
from server.commands.state import CommandState

logger = logging.getLogger(__name__)

#: How far above the refused command's id one seal's ``last_accepted_id`` may move the court's ids.
MAX_ID_JUMP = 1_000_000
#: The key of the command row's ``result`` naming the id the court's next ids were moved above (``None``: not moved).
IDS_ABOVE = "court_ids_above"

REUSED_NOTE = (
    "法院的指令编号落后于封条：封条已接受过编号不超过 {accepted} 的指令，本指令（编号 {command_id}）与封条当时接受的"
    "不是同一指令，封条未执行，其状态未变。法院数据库是否从备份恢复，或切换到了丢失提交的副本？{advanced}"
    "请核对封条的实际状态，然后重新下达该指令。 / "
    "The court's command ids are behind the seal's: the seal had accepted commands up to id {accepted}, and this "
    "command (id {command_id}) is not the one it accepted under that id; the seal did not carry it out and its state "
    "is unchanged. Was the court's database restored from a backup, or failed over to a replica that lost commits? "
    "{advanced_en}Check the seal's actual state, then issue the command again."
)


def reused_id(payload: Mapping[str, Any], signed: bytes | None) -> bool:
    """Whether ``payload``, a verified ``replayed`` refusal, is of other bytes than ``signed`` (the command the court
    signed under that id): the court gave the id twice. ``False`` without a ``sha256`` (an older seal); a ``sha256``
    that is no SHA-256 (not 64 lowercase hex digits) names no bytes of this command: other bytes."""
    return payload.get("reason") == RejectReason.REPLAYED and _names_other_bytes(payload, signed)


def acked_other_bytes(payload: Mapping[str, Any], signed: bytes | None) -> bool:
    """Whether ``payload``, a ``command_ack``, signs the ``sha256`` of other bytes than ``signed`` (the command the
    court signed under that id): the seal carried out another command under it, the court gave the id twice (a late
    ack of the seal's earlier command, answered after the court's ids went back). ``False`` without a ``sha256``."""
    return _names_other_bytes(payload, signed)


def _names_other_bytes(payload: Mapping[str, Any], signed: bytes | None) -> bool:
    own = signed_sha256(signed)
    return "sha256" in payload and own is not None and not same_sha256(payload["sha256"], own)


def settle_reused(
    session: Session, row: CourtCommand, payload: Mapping[str, Any], *, device_id: str, acked: bool = False
) -> dict[str, Any]:
    """The ``result`` of ``row``, refused ``replayed`` by a seal that accepted another command under its id (or whose
    ``acked`` answer is of that other command): the seal's payload with the court's explanation (``court_detail``);
    the court's ids are moved above the seal's ``last_accepted_id`` (:data:`IDS_ABOVE`) when it is plausible."""
    # A refusal names the seal's last accepted id; an ack of another command under this id proves it at least that.
    accepted = row.id if acked else payload.get("last_accepted_id")
    plausible = (
        isinstance(accepted, int) and not isinstance(accepted, bool) and row.id <= accepted <= row.id + MAX_ID_JUMP
    )
    above = accepted if plausible else None
    if above is not None:
        advance_ids(session, above)
    logger.error(
        "court command %d to seal %s reuses an id the seal accepted for another command (it accepted up to %s): the "
        "court's command ids went back (a restored database?); the command is rejected, %s",
        row.id,
        device_id,
        accepted,
        f"new command ids start above {above}" if above is not None else "command ids NOT advanced (docs/deploy.md)",
    )
    shown = accepted if isinstance(accepted, int) else "?"
    note = REUSED_NOTE.format(
        accepted=shown,
        command_id=row.id,
        advanced=f"法院此后的指令编号已调到 {above} 以上。"
        if above is not None
        else "法院未能调整指令编号（见部署文档）。",
        advanced_en=f"The court's next command ids are now above {above}. "
        if above is not None
        else "The court did not move its command ids (see docs/deploy.md). ",
    )
    return {**payload, "court_detail": note, IDS_ABOVE: above}


def advance_ids(session: Session, above: int) -> None:
    """PostgreSQL: move the commands' id sequence to ``above`` if it is below (``setval``, which holds whatever
    becomes of the transaction). SQLite takes its next id from :func:`next_command_id`."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(
        text(
            "SELECT setval(seq, :above) FROM (SELECT pg_get_serial_sequence('commands', 'id')::regclass AS seq) AS s "
            "WHERE COALESCE(pg_sequence_last_value(seq), 0) < :above"
        ),
        {"above": above},
    )


def next_command_id(session: Session) -> int | None:
    """SQLite: the id a new command must take when the court moved its ids above a seal's (:data:`IDS_ABOVE` of a
    command settled as reusing an id) and no command has taken a higher one since; ``None``: the table's next one
    (its highest id + 1). Called under the write lock (SQLite's transactions begin ``IMMEDIATE``). PostgreSQL:
    always ``None`` (its sequence was moved)."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    floor = session.scalar(
        select(func.max(CourtCommand.result[IDS_ABOVE].as_integer())).where(
            CourtCommand.state == CommandState.REJECTED.value, CourtCommand.reason == RejectReason.REPLAYED.value
        )
    )
    if floor is None:
        return None
    top = session.scalar(select(func.max(CourtCommand.id))) or 0
    return int(floor) + 1 if int(floor) >= top else None
