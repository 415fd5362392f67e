"""Request and response models of the removal workflow's routes (:mod:`server.api.removal_requests`,
:mod:`server.api.removal_decisions`), and the one function that shows a request."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.schemas import NO_NUL, DeviceId
from server.auth.access import Permission, has_permission
from server.auth.models import User
from server.removal.disarm import seal_progress
from server.removal.grounds import RemovalGround
from server.removal.lifting import SealFound
from server.removal.models import RemovalRequest
from server.removal.progress import SealProgress, SealStatus
from server.removal.shown import seal_shown, steps_shown
from server.removal.state import RemovalAction, RemovalState, allowed_actions
from server.words import words

#: Reasons, notes, views and statements: free text, never empty where it is required.
Note = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL)]
Reasons = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)]
STATEMENT_MAX = 4000

#: Each state's name, as every page shows it and every message quotes it (the catalogue's ``case_removal_state``).
STATE_LABELS: dict[RemovalState, str] = {state: words("case_removal_state", state.value)[0] for state in RemovalState}
#: ``disarmed`` when some seals were lifted without their acknowledgement by the judge's decision.
DISARMED_WITHOUT_ACK = "部分封条未确认解除布防，经法官决定解除；其余封条均已签名确认，待现场拆除"
#: ``disarmed`` when each seal has acknowledged: only for a reader who may see each seal's answer.
DISARMED_ACKED = "封条均已签名确认解除布防，待现场拆除"
SEAL_LABELS: dict[SealStatus, str] = {
    SealStatus.SENT: "指令已发出，等待封条应答",
    SealStatus.WAITING_FOR_SEAL: "等待封条上线（指令已过期，可重新发送）",
    SealStatus.REFUSED: "封条拒绝了指令（可重新发送）",
    SealStatus.DISARMED: "已解除布防（封条已签名确认）",
    SealStatus.REARMED: "封条确认后又报告已布防（需重新发送解除指令）",
    SealStatus.WITHOUT_ACK: "封条未确认，经法官决定不待其确认解除",
    SealStatus.PENDING: "处理中",
    SealStatus.WITHDRAWN: "已撤回（准予已撤销）",
}
#: What differs on a final request (lifted, aborted): no disarm will be sent again.
SEAL_LABELS_FINAL: dict[SealStatus, str] = SEAL_LABELS | {
    SealStatus.WAITING_FOR_SEAL: "指令已过期，封条未应答",
    SealStatus.REFUSED: "封条拒绝了指令",
    SealStatus.REARMED: "封条确认后又报告已布防",  # no "(需重新发送解除指令)"
}

MAX_SEALS = 64


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note = Field("", description="Why, or what was done (kept in the request's history and the audit log).")


class ReasonsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reasons: Reasons = Field(description="The judge's reasons (required).")


class ApproveBody(ReasonsBody):
    early_reasons: Note = Field(
        "",
        description="Why it is decided before the creditor's time for written views ends (views_due_at). Required "
        "then on a ground resting on the creditor's consent or act (applicant_withdrew, security_given, settlement) "
        "while no view is on record — else a 409 — e.g. the creditor's consent given in writing at the court; kept "
        "after the reasons in the approval's history note and in the audit log.",
    )


class ViewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Reasons = Field(description="The creditor's written view (申请执行人意见).")


class ResendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: DeviceId | None = Field(None, description="Only this seal; null: every seal waiting for a new one.")
    note: Note = ""


class WithoutAckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_ids: list[DeviceId] = Field(
        min_length=1, max_length=MAX_SEALS, description="The seals that never acknowledged the disarm."
    )
    reasons: Reasons = Field(description="The judge's reasons (required), e.g. the seal was found destroyed.")


class LiftedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Note = Field("", description="What was done on site (kept in the request's history and the audit log).")
    found: dict[DeviceId, SealFound] = Field(
        default_factory=dict,
        max_length=MAX_SEALS,
        description="Of each seal lifted without its acknowledgement: removed (found and taken off), destroyed or "
        "missing. Required for those seals, refused for the others.",
    )


class GroundPublic(BaseModel):
    ground: RemovalGround
    zh: str
    en: str
    article: str = Field(description="Where the 查封规定 (法释〔2004〕15号) lists it.")
    article_en: str = Field(description="The same in English: Art. 28 (4).")


class ProofPublic(BaseModel):
    sha256: str = Field(description="SHA-256 of the file; download it from the url.")
    media_type: str
    size: int
    filename: str = Field(description="The name it was uploaded under.")
    uploaded_at: datetime
    url: str


class ViewPublic(BaseModel):
    view_id: int
    author: str | None
    at: datetime
    text: str


class SealProgressPublic(BaseModel):
    device_id: str
    status: SealStatus = Field(
        description="sent (awaiting the seal's answer), waiting_for_seal (the disarm expired: the seal is offline; "
        "re-send it), refused (re-send it), disarmed (its signed command_ack arrived), rearmed (it said it is armed "
        "again after its ack: re-send it), without_ack (it did not answer; lifted without by the judge's "
        "decision), withdrawn (only on an aborted request: its unanswered disarm was withdrawn with the approval). "
        "A reader without the seal-status permission (the debtor) is shown pending (处理中) for sent, "
        "waiting_for_seal, refused, without_ack and withdrawn, in every state of the request, and none of the fields "
        "about its "
        "commands, nor reason or found (server.removal.shown)."
    )
    status_zh: str
    command_id: int | None = Field(
        description="The acknowledged disarm, else the latest one (GET /api/commands/{id}); null for the debtor."
    )
    command_state: str | None = Field(description="Null for the debtor.")
    expires_at: datetime | None = Field(description="Null for the debtor.")
    answered_at: datetime | None = Field(description="Null if not answered, and for the debtor.")
    reason: str | None = Field(description="Why the seal refused it; null for the debtor.")
    commands: int | None = Field(description="Disarms sent to it for this request; null for the debtor.")
    armed: bool | None = Field(
        description="Armed, as the seal's latest signed event in the request's case says, while it was bound to it "
        "and, for a final request, until it became final (null: not said there)."
    )
    found: SealFound | None = Field(
        description="Lifted without its acknowledgement: what the officer found on site; null for the debtor."
    )


class StepPublic(BaseModel):
    at: datetime
    actor: str = Field(description="Username, or '-' for the server itself.")
    action: str = Field(
        description="A RemovalAction, or court_processing: what a reader without the seal-status permission (the "
        "debtor) is shown of a step that tells of a seal's answering (resend_disarm, lift_without_ack, "
        "confirm_disarmed), its note then the fixed 法院处理中 / The court is processing."
    )
    from_state: RemovalState | None
    to_state: RemovalState
    note: str


class RemovalRequestPublic(BaseModel):
    request_id: int
    case_no: str
    state: RemovalState
    state_zh: str
    next_actions: list[RemovalAction] = Field(description="What the state allows next (for whoever may do it).")
    ground: RemovalGround
    ground_zh: str
    ground_en: str
    statement: str
    filed_by: str | None
    filed_at: datetime
    views_due_at: datetime = Field(description="The creditor's written views are taken until then (and the decision).")
    decided_by: str | None
    decided_at: datetime | None
    decision_reasons: str | None
    disarmed_at: datetime | None
    lifted_by: str | None
    lifted_at: datetime | None
    updated_at: datetime
    proofs: list[ProofPublic]
    views: list[ViewPublic]
    seals: list[SealProgressPublic] = Field(description="After approval: each seal and its disarm.")
    history: list[StepPublic] = Field(description="Every step, oldest first.")


def grounds() -> list[GroundPublic]:
    return [
        GroundPublic(ground=g, zh=g.label.zh, en=g.label.en, article=g.label.article, article_en=g.label.article_en)
        for g in RemovalGround
    ]


def request_public(session: Session, request: RemovalRequest, *, now: datetime, reader: User) -> RemovalRequestPublic:
    """``request`` as ``reader`` may see it: its seals' commands only with the seal-status permission."""
    ids = {request.filed_by, request.decided_by, request.lifted_by, *(v.author_id for v in request.views)}
    wanted = {i for i in ids if i is not None}
    names = {row.id: row.username for row in session.execute(select(User.id, User.username).where(User.id.in_(wanted)))}
    state, ground = RemovalState(request.state), RemovalGround(request.ground)
    full = has_permission(reader, Permission.SEAL_STATUS)
    progress = seal_progress(session, request, now=now)
    state_zh = STATE_LABELS[state]
    if full and state == RemovalState.DISARMED and progress:
        if any(p.status is SealStatus.WITHOUT_ACK for p in progress):
            state_zh = DISARMED_WITHOUT_ACK
        elif all(p.status is SealStatus.DISARMED for p in progress):
            state_zh = DISARMED_ACKED
    base = f"/api/removal-requests/{request.id}/proofs"
    return RemovalRequestPublic(
        request_id=request.id,
        case_no=request.case_no,
        state=state,
        state_zh=state_zh,
        next_actions=allowed_actions(state),
        ground=ground,
        ground_zh=ground.label.zh,
        ground_en=ground.label.en,
        statement=request.statement,
        filed_by=names.get(request.filed_by),
        filed_at=request.filed_at,
        views_due_at=request.views_due_at,
        decided_by=names.get(request.decided_by) if request.decided_by else None,
        decided_at=request.decided_at,
        decision_reasons=request.decision_reasons,
        disarmed_at=request.disarmed_at,
        lifted_by=names.get(request.lifted_by) if request.lifted_by else None,
        lifted_at=request.lifted_at,
        updated_at=request.updated_at,
        proofs=[
            ProofPublic(
                sha256=p.sha256,
                media_type=p.media_type,
                size=p.size,
                filename=p.filename,
                uploaded_at=p.uploaded_at,
                url=f"{base}/{p.sha256}",
            )
            for p in request.proofs
        ],
        views=[ViewPublic(view_id=v.id, author=names.get(v.author_id), at=v.at, text=v.text) for v in request.views],
        seals=[_seal(p, full=full, final=state.is_final) for p in progress],
        history=[StepPublic(**_without_said(vars(s))) for s in steps_shown(request.steps, full=full)],
    )


def _seal(progress: SealProgress, *, full: bool, final: bool) -> SealProgressPublic:
    labels = SEAL_LABELS_FINAL if final else SEAL_LABELS
    if not full:
        shown = seal_shown(progress, full=False, final=final)
        return SealProgressPublic(
            device_id=shown.device_id,
            status=shown.status,
            status_zh=labels[shown.status],
            command_id=None,
            command_state=None,
            expires_at=None,
            answered_at=None,
            reason=None,
            commands=None,
            armed=shown.armed,
            found=None,
        )
    return SealProgressPublic(
        device_id=progress.device_id,
        status=progress.status,
        status_zh=labels[progress.status],
        command_id=progress.command_id,
        command_state=progress.command_state,
        expires_at=progress.expires_at,
        answered_at=progress.answered_at,
        reason=progress.reason,
        commands=progress.commands,
        armed=progress.armed,
        found=SealFound(progress.found) if progress.found is not None else None,
    )


def _without_said(step: dict[str, Any]) -> dict[str, Any]:
    """A step's fields but its note's key and values: the API gives the note written out, Chinese first."""
    return {name: value for name, value in step.items() if name != "said"}
