"""Removal requests: the debtor files one (ground, statement, proof files), follows it and may withdraw it before
the decision; the creditor adds written views; everyone of the case reads it. The decision and what follows are
in :mod:`server.api.removal_decisions`; the states in :mod:`server.removal.state`.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile, status
from fastapi.responses import StreamingResponse

from server.api.deps import (
    ContextDep,
    CurrentUser,
    Responses,
    SessionDep,
    audit_read,
    case_with,
    removal_request_for,
)
from server.api.params import Before, RowIdPath
from server.api.removal_schemas import (
    STATEMENT_MAX,
    GroundPublic,
    NoteBody,
    RemovalRequestPublic,
    ViewBody,
    grounds,
    request_public,
)
from server.api.routing import ValidatedRoute
from server.api.schemas import NO_NUL
from server.api.stored import stored_response
from server.auth.access import Permission, is_court_staff
from server.config import RemovalSettings
from server.core.base import utc_now
from server.core.blobs import Blob
from server.core.live import Change
from server.errors import NotFound
from server.removal.disarm import settle_on_read
from server.removal.grounds import RemovalGround
from server.removal.models import RemovalProof
from server.removal.proof_metadata import without_metadata
from server.removal.proofs import PDF, CheckedProof, ProofStore, check_proof, download_name
from server.removal.service import add_view, cancel_request, file_with_proofs
from server.removal.steps import list_requests
from server.seals.models import Case

logger = logging.getLogger(__name__)

router = APIRouter(tags=["removal"], route_class=ValidatedRoute)

#: The filing route takes proof files: its body may be larger than other routes', if it comes from the debtor of
#: the case its path names (server.api.body_limit, server.api.deps.api_uploader).
UPLOAD_PATH = re.compile(r"/api/cases/(?P<case_no>.+)/removal-requests")
NOT_FOUND: Responses = {404: {"description": "No such removal request, or not of your cases"}}
STATE_CONFLICT: Responses = {409: {"description": "The request's state does not allow it; the body names the state"}}
MAX_PAGE = 200


def upload_limit(settings: RemovalSettings) -> int:
    """The body a filing may have: every proof file at its largest, and the form around them."""
    return settings.proof_max_files * settings.proof_max_bytes + 256 * 1024


@router.get("/removal-grounds")
def read_grounds() -> list[GroundPublic]:
    """The grounds a removal request may rest on (查封规定 第二十八条), in Chinese and English."""
    return grounds()


@router.post(
    "/cases/{case_no:path}/removal-requests",
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "No such case, or not yours"},
        409: {"description": "The case has an open request already, or no seal to lift"},
        413: {"description": "The upload is larger than all proof files together may be"},
        422: {"description": "A proof file is refused: not a PDF/JPEG/PNG by content, misnamed, too large, too many"},
    },
)
def file(
    case: Annotated[Case, Depends(case_with(Permission.REMOVAL_FILE))],
    user: CurrentUser,
    session: SessionDep,
    context: ContextDep,
    ground: Annotated[RemovalGround, Form(description="Why the seizure should be lifted (GET /api/removal-grounds).")],
    statement: Annotated[
        str, Form(min_length=1, max_length=STATEMENT_MAX, pattern=NO_NUL, description="The debtor's statement.")
    ],
    files: Annotated[
        list[UploadFile] | None, File(description="Proof files: PDF, JPEG or PNG, checked by their content.")
    ] = None,
) -> RemovalRequestPublic:
    """File a removal request for your case, with proof files (debtor)."""
    settings = context.settings.removal
    request = file_with_proofs(
        session,
        actor=user,
        case_no=case.case_no,
        ground=ground,
        statement=statement,
        uploads=files or [],
        check=lambda upload: _checked(upload, settings.proof_max_bytes),
        store=context.stores.proofs,
        settings=settings,
        clock=utc_now,
    )
    context.live.publish([Change("removal", case_no=request.case_no)])  # open pages of the case show it at once
    now = request.filed_at
    session.expire_all()
    return request_public(session, request, now=now, reader=user)


def _checked(upload: UploadFile, max_bytes: int) -> CheckedProof:
    data = upload.file.read(max_bytes + 1)
    return check_proof(
        data, filename=upload.filename or "", declared_type=upload.content_type or "", max_bytes=max_bytes
    )


@router.get("/cases/{case_no:path}/removal-requests", responses={404: {"description": "No such case, or not yours"}})
def read_case_requests(
    case: Annotated[Case, Depends(case_with(Permission.REMOVAL_READ))],
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Requests per page.")] = 20,
    before: Before = None,
) -> list[RemovalRequestPublic]:
    """The case's removal requests, newest first."""
    now = utc_now()
    return [
        request_public(session, r, now=now, reader=user)
        for r in list_requests(session, case_no=case.case_no, limit=limit, before=before)
    ]


@router.get("/removal-requests/{request_id}", responses=NOT_FOUND)
def read_request(
    request_id: RowIdPath, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """One removal request: its state, proofs, the creditor's views, each seal's disarm and its history."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_READ)
    now = utc_now()
    case_no = request.case_no
    if settle_on_read(context.session_factory, session, request, now=now):  # every seal's ack is in
        context.live.publish([Change("removal", case_no=case_no)])
        request = removal_request_for(session, user, request_id, Permission.REMOVAL_READ)
    return request_public(session, request, now=now, reader=user)


@router.get(
    "/removal-requests/{request_id}/proofs/{sha256}",
    responses=NOT_FOUND,
    response_class=StreamingResponse,
)
def read_proof(
    request_id: RowIdPath,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="The proof's SHA-256.")],
    user: CurrentUser,
    session: SessionDep,
    context: ContextDep,
) -> StreamingResponse:
    """One proof file of a removal request, as a download: as uploaded to the court's staff, a picture without its
    metadata (EXIF, GPS, XMP, comments) to the parties."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_READ)
    proof = next((p for p in request.proofs if p.sha256 == sha256), None)
    if proof is None:
        raise NotFound(f"removal request {request_id} has no proof {sha256}")
    store = context.stores.proofs
    original = is_court_staff(user) or proof.media_type == PDF
    blob = store.open_proof(proof.sha256, proof.media_type) if original else _without_metadata(store, proof)
    if blob is None:
        logger.error(
            "the file of proof %s of removal request %d is missing from %s: evidence is lost",
            sha256,
            request_id,
            store.backend.description,
        )
        raise NotFound(f"the file of proof {sha256} is missing")
    details = {
        "request_id": request_id,
        "filename": proof.filename,
        "served": "as_uploaded" if original else "without_metadata",
    }
    audit_read(context, user, action="evidence.proof", target=sha256, case_no=request.case_no, details=details)
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
    # under a name built here: the uploaded one's extension, read by a browser on Windows, could make it a program
    attachment = download_name(proof.filename, proof.media_type)
    return stored_response(blob, media_type=proof.media_type, headers=headers, attachment=attachment)


def _without_metadata(store: ProofStore, proof: RemovalProof) -> Blob | None:
    """A party's copy of a proof picture: without where it was taken, or by what (the court reads it as uploaded)."""
    data = store.read_proof(proof.sha256, proof.media_type)
    if data is None:
        return None
    copy = without_metadata(data, proof.media_type)
    return Blob(len(copy), iter([copy]))


@router.post("/removal-requests/{request_id}/cancel", responses=NOT_FOUND | STATE_CONFLICT)
def cancel(
    request_id: RowIdPath, body: NoteBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Withdraw your removal request before the judge decides (debtor)."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_FILE, for_update=True)
    now = utc_now()
    cancel_request(session, actor=user, request=request, note=body.note, now=now)
    session.commit()
    context.live.publish([Change("removal", case_no=request.case_no)])
    session.expire_all()
    return request_public(session, request, now=now, reader=user)


@router.post(
    "/removal-requests/{request_id}/views",
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND | {409: {"description": "Decided already, or the time for views has ended"}},
)
def comment(
    request_id: RowIdPath, body: ViewBody, user: CurrentUser, session: SessionDep, context: ContextDep
) -> RemovalRequestPublic:
    """Add a written view on a removal request of your case, before the decision (creditor)."""
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_COMMENT, for_update=True)
    now = utc_now()
    add_view(session, actor=user, request=request, text=body.text, now=now)
    session.commit()
    context.live.publish([Change("removal", case_no=request.case_no)])
    session.expire_all()
    return request_public(session, request, now=now, reader=user)
