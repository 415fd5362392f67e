"""The evidence bundle of a case (``docs/evidence.md``), for its judge and the clerks; every export is audited."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask

from server.api.deps import ContextDep, CurrentUser, case_with
from server.api.routing import ValidatedRoute
from server.auth.access import Permission
from server.errors import Invalid
from server.export.errors import ExportsBusy
from server.export.gather import TimeRange
from server.export.service import ExportConfig, export_case
from server.seals.models import Case

router = APIRouter(tags=["evidence"], route_class=ValidatedRoute)

Moment = Annotated[
    datetime | None, Query(description="Only events whose ts is at or after (from) / before (to) this moment.")
]


@router.get(
    "/cases/{case_no:path}/export.zip",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The bundle; check it with seal-verify."},
        404: {"description": "No such case, or not one of yours"},
        409: {
            "description": "Nothing in the log yet, or the bundle would pass a size bound of seal-verify (which would "
            "refuse it): export shorter ranges with from/to"
        },
        503: {"description": "As many exports as the server runs at once are running: retry after Retry-After"},
    },
)
def export_bundle(
    case: Annotated[Case, Depends(case_with(Permission.EVIDENCE_EXPORT))],
    user: CurrentUser,
    context: ContextDep,
    start: Annotated[Moment, Query(alias="from")] = None,
    end: Annotated[Moment, Query(alias="to")] = None,
) -> Response:
    """Download the case's evidence bundle (events, snapshots, records, Merkle proofs, signed manifest)."""
    if any(m is not None and m.tzinfo is None for m in (start, end)):
        raise Invalid(
            "from 和 to 须带时区（例如 2026-12-01T00:00:00+08:00）。 / "
            "from and to need a time zone (e.g. 2026-12-01T00:00:00+08:00)"
        )
    if start is not None and end is not None and start > end:
        raise Invalid("from 晚于 to。 / from is after to")
    workdir = Path(tempfile.mkdtemp(prefix="seal-export-"))
    # A session that writes (the GET's own reads without SQLite's write lock, and its read snapshot could not become
    # a write once the ingest committed): the export signs a checkpoint if it must, and records itself.
    try:
        with context.session_factory() as writing:
            result = export_case(
                writing,
                case_no=case.case_no,
                target=workdir / "case.zip",
                log_key=context.log_key,
                config=ExportConfig.from_settings(context.settings, stores=context.stores),
                actor=user,
                exported_by=user.username,
                time_range=TimeRange(start, end),
                wait=False,  # a worker held, and a case's memory, per export: one more is refused, not queued
            )
    except ExportsBusy as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        headers = {"Retry-After": str(exc.retry_after_s)}
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return FileResponse(
        result.path,
        media_type="application/zip",
        filename=f"evidence-{result.manifest_sha256[:12]}.zip",
        headers={"Cache-Control": "private, no-store"},
        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True),
    )
