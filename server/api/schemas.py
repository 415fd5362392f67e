"""Request and response models of the REST API, one family per resource, and the bounded types of their fields.

Every string a client sends has a length bound and a character rule: identifiers and one-line fields refuse control
characters (:data:`ONE_LINE`), free text refuses only NUL (:data:`NO_NUL`, which PostgreSQL cannot store). So a
hostile value is a 422 naming the field, never a database error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from seal_protocol.topics import DEVICE_ID_PATTERN
from server.auth.access import Role
from server.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from server.seals.case_numbers import parse_case_no

#: No control characters (C0, DEL): identifiers, names, URLs, one-line fields.
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
#: Anything but NUL: notes and other free text.
NO_NUL = r"^[^\x00]*$"
#: The largest id of a (signed 64-bit) id column.
MAX_ROW_ID = 2**63 - 1
CASE_NO_MAX = 64
USERNAME_MAX = 64


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before the first representable UTC moment
        raise ValueError("时间超出可表示的范围。 / the time is out of range") from None


def _canonical_case_no(value: str) -> str:
    return parse_case_no(value).text


def _court_code(value: str) -> str:
    parse_case_no(f"(2000){value}执1号")
    return value


CaseNo = Annotated[str, StringConstraints(min_length=1, max_length=CASE_NO_MAX, pattern=ONE_LINE)]
#: A new case's number: checked against the form of enforcement case numbers and written in its canonical form.
EnforcementCaseNo = Annotated[CaseNo, AfterValidator(_canonical_case_no)]
CourtCode = Annotated[
    str, StringConstraints(min_length=1, max_length=16, pattern=ONE_LINE), AfterValidator(_court_code)
]
Phone = Annotated[str, StringConstraints(max_length=32, pattern=ONE_LINE)]
DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=DEVICE_ID_PATTERN.pattern)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=USERNAME_MAX, pattern=ONE_LINE)]
PublicKeyText = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ONE_LINE)]
Name = Annotated[str, StringConstraints(max_length=128, pattern=ONE_LINE)]
Place = Annotated[str, StringConstraints(max_length=256, pattern=ONE_LINE)]
FreeText = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
#: A timezone-aware moment, normalised to UTC (a value that has no UTC form is refused, not a server error).
Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "error"] = Field(
        description="ok: database and broker fine; degraded: no broker connection; error: no database."
    )
    broker: Literal["connected", "disconnected"]
    db: Literal["ok", "error"]


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Row id, increasing in the order the court received events; the paging cursor.")
    device_id: str
    case_no: str
    seq: int
    event_id: str
    type: str
    ts: datetime = Field(description="When it happened, by the seal's clock.")
    received_at: datetime
    prev_hash: str | None
    sig: str
    payload: dict[str, Any]
    envelope: str = Field(description="The signed envelope exactly as received (verify it with the seal's key).")


class EventPage(BaseModel):
    case_no: str
    events: list[EventPublic] = Field(description="Newest (last received) first.")
    next_before: int | None = Field(description="Pass as ?before= for the next (older) page; null on the last page.")


class SealPublic(BaseModel):
    device_id: str
    case_no: str | None
    location: str
    registered_at: datetime
    status: str | None = Field(description="The seal's last reported status (online/offline), if any.")
    status_changed_at: datetime | None
    last_seen_at: datetime | None
    last_event_at: datetime | None
    online: bool = Field(description="Reported online and heard from within offline_after_s.")
    armed: bool | None = Field(
        description="Armed, as the seal's latest signed event that tells says (not what the court sent); null if none "
        "has told yet."
    )
    armed_at: datetime | None = Field(description="The time stamp of that event.")
    installed_at: datetime | None = Field(description="When the seal was bound to its current case (installed).")
    installed_by: str | None = Field(description="Who bound it; null when done on the command line or unbound.")


class SealPartyPublic(BaseModel):
    """A seal as the debtor sees it: whether it is in place and armed — not its connection, nor when it last spoke."""

    device_id: str
    case_no: str | None
    location: str
    armed: bool | None = Field(
        description="Armed, as the seal's latest signed event that tells says; null: unknown, or withheld "
        "(armed_hidden)."
    )
    installed_at: datetime | None = Field(description="When the seal was bound to its current case (installed).")
    armed_hidden: bool = Field(
        False,
        description="The armed state is withheld (armed is null): the seal's case is `lifting`, and the seal may "
        "stand disarmed before an officer comes — as the notice's public page and the portal withhold it.",
    )


class SealEnrolledPublic(SealPublic):
    mqtt_password: str | None = Field(
        description="The seal's new MQTT password (its username is its device id), shown once: put it in the "
        "seal's mqtt-password file. Null if the seal already had an MQTT account."
    )


class MqttPasswordPublic(BaseModel):
    username: str = Field(description="The MQTT username: the seal's device id.")
    mqtt_password: str = Field(description="The new password, shown once: put it in the seal's mqtt-password file.")
    in_force: bool = Field(True, description="False: the broker's files were not rewritten; the old password works.")


class SealCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId = Field(description="The seal's id, also its MQTT username.")
    public_key: PublicKeyText = Field(description="The seal's Ed25519 public key, base64.")
    location: Place = Field("", description="Where the seal is kept or installed.")


class SealBind(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_no: CaseNo = Field(description="The case to bind the seal to.")
    location: Place | None = Field(None, description="Where the seal is installed; unchanged if null.")


class SealBindingPublic(BaseModel):
    device_id: str
    case_no: str
    bound_at: datetime
    bound_by: str | None = Field(description="Username of whoever bound it; null when done on the CLI.")
    unbound_at: datetime | None = Field(description="Null while the binding lasts.")
    unbound_by: str | None


class SealRegistrationPublic(BaseModel):
    at: datetime
    by: str | None = Field(description="Username of the clerk who registered it; null when done on the CLI.")
    public_key: str | None = Field(description="The key it was registered with (base64).")


class SealEnrolmentPublic(BaseModel):
    device_id: str
    public_key: str = Field(
        description="The enrolled Ed25519 public key, base64 of the raw 32 bytes: verify the "
        "seal's events (their envelope field) with it."
    )
    public_key_sha256: str = Field(description="SHA-256 of the raw key bytes, hex: compare it with the seal's label.")
    registered_at: datetime = Field(description="When the current key was registered.")
    registered_by: str | None = Field(description="Who registered the current key; null when done on the CLI.")
    registrations: list[SealRegistrationPublic] = Field(
        description="Every registration of the seal, oldest first (a new key means the device was re-provisioned)."
    )
    bindings: list[SealBindingPublic] = Field(description="Its bindings to the cases you may see, newest first.")


class CaseStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["closed"] = Field(description="The status to move to (the clerk may close a case).")
    note: FreeText = Field("", description="Why.")


class CourtCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: CourtCode = Field(description="法院代字, as case numbers carry it, e.g. 苏0214.")
    name: Name = Field(min_length=1, description="e.g. 无锡市滨湖区人民法院.")
    phone: Phone = Field("", description="The court's telephone number printed on notices.")
    address: Place = ""


class CourtUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=ONE_LINE)] | None = None
    phone: Phone | None = None
    address: Place | None = None


class CourtPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    phone: str
    address: str


class AssignmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(description="A judge, officer, creditor or debtor.")


class AssignmentPublic(BaseModel):
    case_no: str
    username: str
    full_name: str
    role: str


class SnapshotPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="The row's id: the next page's ``before``.")
    sha256: str = Field(description="SHA-256 of the JPEG; download it from /api/snapshots/{sha256}.")
    device_id: str
    case_no: str
    size: int
    received_at: datetime
    named: bool = Field(
        description="Whether a stored signed event of this case from this seal names the picture (its evidence). "
        "false: no event names it yet — a picture may come before the snapshot_taken event that names it, and is "
        "filed under the seal's case meanwhile; pictures are not signed, so until an event names it, it may come "
        "from anyone holding the seal's MQTT password."
    )


class SealEventPage(BaseModel):
    device_id: str
    events: list[EventPublic] = Field(description="Newest (last received) first; only events of visible cases.")
    next_before: int | None = Field(description="Pass as ?before= for the next (older) page; null on the last page.")


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class AccessCodeLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    case_no: CaseNo = Field(description="案号, as printed with the code.")
    code: str = Field(min_length=1, max_length=64, pattern=ONE_LINE, description="The access code (被执行人查询码).")


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    username: str
    full_name: str
    role: Role
    disabled: bool
    created_at: datetime


class MePublic(UserPublic):
    case_nos: list[str] = Field(description="Cases assigned to the user; empty for a clerk, who sees all.")


class LoginPublic(BaseModel):
    access_token: str = Field(description="Bearer token for API clients: 'Authorization: Bearer <token>'.")
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: MePublic


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)
    role: Role
    full_name: Name = ""
    case_nos: list[CaseNo] = Field(default_factory=list, max_length=100, description="Cases to assign the user to.")


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = Field(None, description="A new role; ends the user's logins.")
    disabled: bool | None = Field(None, description="Disable (true) ends the user's logins; enable (false).")
    full_name: Name | None = None
    password: str | None = Field(
        None,
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description="Reset the password; ends the user's logins.",
    )


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Increasing; the paging cursor.")
    at: datetime
    actor: str = Field(
        description="Username of the actor; cli:<OS user or --actor> for the command line; '-' for an anonymous caller."
    )
    action: str
    target: str
    case_no: str | None = Field(description="The case the action concerns, if any.")
    details: dict[str, Any] = Field(description="The facts and the notes given with the action.")


class AuditPage(BaseModel):
    entries: list[AuditPublic] = Field(description="Newest first.")
    next_before: int | None = Field(description="Pass as ?before= for the next (older) page; null on the last page.")
