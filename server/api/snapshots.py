"""Snapshots: pictures the seals took, listed per case and downloaded by their SHA-256."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from server.api.deps import ContextDep, CurrentUser, SessionDep, audit_read, case_with
from server.api.params import Before
from server.api.routing import ValidatedRoute
from server.api.schemas import SnapshotPublic
from server.api.stored import stored_response
from server.auth.access import Permission, snapshot_for
from server.errors import NotFound
from server.evidence.models import Snapshot
from server.evidence.queries import PICTURE_NAMED
from server.seals.models import Case

router = APIRouter(tags=["snapshots"], route_class=ValidatedRoute)

MAX_PAGE = 500

Sha256 = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the picture, lowercase hex.")]


@router.get("/cases/{case_no:path}/snapshots", responses={404: {"description": "No such case, or not one of yours"}})
def list_case_snapshots(
    case: Annotated[Case, Depends(case_with(Permission.SNAPSHOT_READ))],
    session: SessionDep,
    named: Annotated[
        bool | None,
        Query(
            description="true: only the pictures a stored signed event of the case names (its evidence); false: "
            "only those none names yet (filed provisionally: unsigned, they may come from anyone holding the "
            "seal's MQTT password). Unset: all."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Snapshots per page.")] = 50,
    before: Before = None,
) -> list[SnapshotPublic]:
    """The case's snapshots, newest first, in pages (the next page: ``before`` the last one's ``id``); each says
    whether a stored signed event of the case names it."""
    query = select(Snapshot, PICTURE_NAMED.label("named")).where(Snapshot.case_no == case.case_no)
    if named is not None:
        query = query.where(PICTURE_NAMED if named else ~PICTURE_NAMED)
    if before is not None:
        query = query.where(Snapshot.id < before)
    return [
        SnapshotPublic(
            id=row.id,
            sha256=row.sha256,
            device_id=row.device_id,
            case_no=row.case_no,
            size=row.size,
            received_at=row.received_at,
            named=bool(is_named),
        )
        for row, is_named in session.execute(query.order_by(Snapshot.id.desc()).limit(limit))
    ]


@router.get(
    "/snapshots/{sha256}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The JPEG, byte for byte as the seal sent it."},
        404: {"description": "No such snapshot, or not of one of your cases"},
    },
)
def download_snapshot(sha256: Sha256, user: CurrentUser, session: SessionDep, context: ContextDep) -> StreamingResponse:
    """Download a snapshot of a case you may see."""
    snapshot = snapshot_for(session, user, sha256)
    blob = context.stores.snapshots.open(snapshot.sha256)  # streamed through the server: no link to the store
    if blob is None:
        raise NotFound(f"snapshot {sha256} is recorded but its file is missing")
    details = {"device_id": snapshot.device_id}
    audit_read(context, user, action="evidence.snapshot", target=sha256, case_no=snapshot.case_no, details=details)
    return stored_response(blob, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})
