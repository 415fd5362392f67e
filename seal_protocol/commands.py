"""Court → seal commands, signed by the court server's Ed25519 key.

A seal pins the server's public key from its configuration and refuses a command that is unsigned, wrongly signed,
addressed to another device or issued for another case than the one it guards, expired, or replayed (its
``command_id`` not above the last accepted one). It answers every command with a signed ``command_ack`` or
``command_rejected`` event. A refusal names the ``command_id`` only when the command's signature verified: bytes
refused as ``malformed``, ``unsigned`` or ``bad_signature`` were signed by no court key, so the id they claim is
nobody's word; the refusal then names it ``claimed_command_id``, with the SHA-256 of the refused bytes
(:func:`refusal_payload`), and the court settles no command with it (:data:`UNVERIFIED_REASONS`). A ``replayed``
refusal also carries the ``sha256`` of the refused bytes and the seal's ``last_accepted_id``: the court tells a
command the seal already accepted (the same bytes, delivered again) from a new one that reuses an id the seal had
accepted for another command (the court's ids went back: a restored database).

The case matters because a seal moves between cases: the court ends a binding's pending commands when the seal is
moved, but a command the broker already took for the seal's persistent session still reaches it afterwards. Its
signed ``case_no`` lets the seal tell a disarm decided for its old case from one for the case it guards now.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from seal_protocol.case_numbers import same_case_no
from seal_protocol.envelope import Timestamp, parse_ts, utc_now_ms
from seal_protocol.errors import InvalidEnvelope, SignatureError
from seal_protocol.signing import SigningKey, VerifyKey, sign_bytes, verify_bytes
from seal_protocol.topics import DEVICE_ID_PATTERN
from seal_protocol.wirejson import (
    MAX_SAFE_INTEGER,
    canonical_json,
    check_exact_fields,
    check_wire_value,
    loads_wire_json,
)

MAX_COMMAND_BYTES = 8 * 1024
#: A command's fields on the wire and their exact JSON types.
_WIRE_TYPES: dict[str, tuple[type, ...]] = {
    "v": (int,),
    "command_id": (int,),
    "device_id": (str,),
    "case_no": (str,),
    "action": (str,),
    "args": (dict,),
    "issued_at": (str,),
    "expires_at": (str,),
    "sig": (str, type(None)),
}


class CommandAction(StrEnum):
    DISARM = "disarm"
    ARM = "arm"
    TEST_WARNING = "test_warning"
    SNAPSHOT = "snapshot"
    PING = "ping"


#: What a seal's ``command_ack`` says it did (its ``result``), for each action (docs/protocol.md, the
#: ``command_ack`` row): a test warning's is the warning's outcome as the seal's events record it.
COMMAND_RESULTS: dict[CommandAction, tuple[str, ...]] = {
    CommandAction.DISARM: ("disarmed", "already_disarmed"),
    CommandAction.ARM: ("armed", "already_armed"),
    CommandAction.TEST_WARNING: ("started", "played", "failed", "stopped", "busy"),
    CommandAction.SNAPSHOT: ("taken", "no_frame", "camera_lost", "store_failed", "no_camera", "camera_unavailable"),
    CommandAction.PING: ("pong",),
}


class RejectReason(StrEnum):
    """Why a seal refused a command; carried in the ``command_rejected`` event's payload."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    WRONG_DEVICE = "wrong_device"
    WRONG_CASE = "wrong_case"  # issued for another case than the one the seal is configured for
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REPLAYED = "replayed"


#: Refusals decided before the command's signature verified: they name no ``command_id`` (bytes no court key signed
#: may claim any id), and no command is settled by them, whatever fields a seal puts in.
UNVERIFIED_REASONS = frozenset({RejectReason.MALFORMED, RejectReason.UNSIGNED, RejectReason.BAD_SIGNATURE})


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(1, description="Schema version of the command.")
    command_id: StrictInt = Field(ge=1, le=MAX_SAFE_INTEGER, description="Strictly increasing per device.")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN.pattern, description="The seal the command is for.")
    case_no: str = Field(
        min_length=1, max_length=64, description="The enforcement case (案号) the seal was bound to when issued."
    )
    action: CommandAction = Field(description="What the seal is asked to do.")
    args: dict[str, Any] = Field(default_factory=dict, description="Action-specific arguments.")
    issued_at: Timestamp = Field(description="When the court issued it (UTC, ms).")
    expires_at: Timestamp = Field(description="After this instant the seal refuses it (UTC, ms).")
    sig: str | None = Field(None, pattern=r"^[0-9a-f]{128}$", description="Server's Ed25519 signature (hex).")

    @field_validator("args")
    @classmethod
    def _wire_args(cls, args: dict[str, Any]) -> dict[str, Any]:
        check_wire_value(args, what="args")
        return args

    def signing_bytes(self) -> bytes:
        body = self.model_dump(mode="json")
        del body["sig"]
        return canonical_json(body)


def new_command(
    *,
    command_id: int,
    device_id: str,
    case_no: str,
    action: CommandAction,
    key: SigningKey,
    ttl: timedelta = timedelta(minutes=10),
    args: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Command:
    """A signed command valid from ``now`` for ``ttl``."""
    issued = now or datetime.now(UTC)
    unsigned = Command(
        command_id=command_id,
        device_id=device_id,
        case_no=case_no,
        action=action,
        args=args or {},
        issued_at=utc_now_ms(issued),
        expires_at=utc_now_ms(issued + ttl),
    )
    return unsigned.model_copy(update={"sig": sign_bytes(key, unsigned.signing_bytes())})


def encode_command(command: Command) -> bytes:
    return canonical_json(command.model_dump(mode="json"))


class CommandRefused(InvalidEnvelope):
    """A command the seal must not execute; ``reason`` says why. ``command_id`` is set only when the command's
    signature verified (the court's word); ``claimed_command_id`` is the id the bytes claim, if one could be read;
    ``last_accepted_id``, for ``replayed``, the seal's last accepted id that the command's is not above."""

    def __init__(
        self,
        reason: RejectReason,
        detail: str,
        command_id: int | None = None,
        *,
        claimed: int | None = None,
        last_accepted: int | None = None,
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.command_id = command_id
        self.claimed_command_id = command_id if command_id is not None else claimed
        self.last_accepted_id = last_accepted


def refusal_payload(refused: CommandRefused, data: bytes, detail: str) -> dict[str, Any]:
    """The ``command_rejected`` payload for ``refused`` of the received ``data``: ``command_id`` only after the
    signature verified; else ``command_id`` null, ``claimed_command_id`` (or null) and ``sha256`` of ``data``. A
    ``replayed`` refusal also names ``sha256`` of ``data`` and ``last_accepted_id``: whether the seal accepted these
    very bytes or another command under that id, the court can tell."""
    if refused.reason not in UNVERIFIED_REASONS and refused.command_id is not None:
        payload: dict[str, Any] = {"command_id": refused.command_id, "reason": refused.reason.value, "detail": detail}
        if refused.reason is RejectReason.REPLAYED:
            payload["sha256"] = hashlib.sha256(data).hexdigest()
            payload["last_accepted_id"] = refused.last_accepted_id
        return payload
    return {
        "command_id": None,
        "claimed_command_id": refused.claimed_command_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "reason": refused.reason.value,
        "detail": detail,
    }


def _claimed_id(data: bytes) -> int | None:
    """The ``command_id`` that bytes refused as malformed claim, if it can be read; nobody's word."""
    try:
        body = loads_wire_json(data)
    except InvalidEnvelope:
        return None
    claimed = body.get("command_id") if isinstance(body, dict) else None
    if isinstance(claimed, int) and not isinstance(claimed, bool) and 1 <= claimed <= MAX_SAFE_INTEGER:
        return claimed
    return None


def check_command(
    data: bytes,
    *,
    device_id: str,
    case_no: str,
    server_key: VerifyKey,
    last_accepted_id: int,
    now: datetime,
    clock_skew: timedelta = timedelta(seconds=120),
    clock_unsynced: bool = False,
) -> Command:
    """Parse and check a received command for the seal ``device_id`` guarding ``case_no``; raise
    :class:`CommandRefused` with the reason, else return it.

    ``now`` is the seal's best knowledge of the present (its wall clock, never below the court's latest signed
    time it has seen). ``clock_unsynced``: the seal's kernel does not know its wall clock to be set (a Pi without a
    real-time clock before NTP answered); a command issued "in the future" is then the court's signed word that the
    seal's clock is behind, not a reason to refuse it: it is not refused ``not_yet_valid``.

    The case numbers are compared by their canonical form (:func:`~seal_protocol.case_numbers.same_case_no`): a
    seal configured with full-width parentheses obeys a command that names its case with ASCII ones."""
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandRefused(RejectReason.MALFORMED, f"{len(data)} bytes, limit {MAX_COMMAND_BYTES}")
    try:
        command = Command.model_validate(check_exact_fields(loads_wire_json(data), _WIRE_TYPES, what="command"))
    except (InvalidEnvelope, ValidationError) as exc:
        raise CommandRefused(RejectReason.MALFORMED, str(exc).splitlines()[0], claimed=_claimed_id(data)) from None
    cid = command.command_id  # only claimed until the signature verifies
    if command.sig is None:
        raise CommandRefused(RejectReason.UNSIGNED, "command carries no signature", claimed=cid)
    if encode_command(command) != data:
        raise CommandRefused(RejectReason.MALFORMED, "not the canonical encoding of the command", claimed=cid)
    try:
        verify_bytes(server_key, command.signing_bytes(), command.sig)
    except SignatureError:
        raise CommandRefused(RejectReason.BAD_SIGNATURE, "not signed by the pinned court key", claimed=cid) from None
    if command.device_id != device_id:
        raise CommandRefused(RejectReason.WRONG_DEVICE, f"addressed to {command.device_id}", cid)
    # The replay first: a command this seal carried out, delivered again (its acknowledgement not yet taken by the
    # broker) once it has expired or the seal has been given another case, is answered "replayed", never "expired"
    # or "wrong_case", which would put in its signed evidence that a command it obeyed was refused.
    if cid <= last_accepted_id:
        detail = f"id {cid} is not above the last accepted {last_accepted_id}"
        raise CommandRefused(RejectReason.REPLAYED, detail, cid, last_accepted=last_accepted_id)
    if now > parse_ts(command.expires_at):
        raise CommandRefused(RejectReason.EXPIRED, f"expired at {command.expires_at}", cid)
    if parse_ts(command.issued_at) > now + clock_skew and not clock_unsynced:
        raise CommandRefused(RejectReason.NOT_YET_VALID, f"issued in the future ({command.issued_at})", cid)
    if not same_case_no(command.case_no, case_no):
        raise CommandRefused(
            RejectReason.WRONG_CASE, f"issued for case {command.case_no}, this seal guards {case_no}", cid
        )
    return command
