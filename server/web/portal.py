"""The debtor's case in the portal (``/portal/cases/{case_no}``): the case's status, its seals (armed or not, as
their signed events say), the removal request — filed here with its proof files, followed live to ``disarmed``
(each seal's progress, the history), withdrawn before the decision — and the earlier requests.

The same services and checks as the API's (:mod:`server.api.removal_requests`): ``file_with_proofs`` with proofs
checked by :func:`server.removal.proofs.check_proof` (refused in the page's words), ``cancel_request``; the case by
``case_for(…, REMOVAL_FILE)``, a request by ``removal_request_for``. A refused input is shown next to its field
(422), a state that does not allow it as a message above the form (409) — never a 500. Each change is published on
the live bus after its commit.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response, status
from starlette.datastructures import UploadFile

from server.api.deps import SessionDep, removal_request_for
from server.api.params import CaseNoPath, RowIdPath
from server.api.removal_schemas import STATEMENT_MAX
from server.api.schemas import MAX_ROW_ID
from server.auth.access import Permission
from server.config import RemovalSettings
from server.core.live import Change
from server.errors import Conflict
from server.removal.errors import ProofRefused, ProofStorageFailed
from server.removal.grounds import RemovalGround
from server.removal.proofs import CheckedProof, check_proof, safe_filename, sniff
from server.removal.service import cancel_request, file_with_proofs
from server.web.deps import Page, SignedInPage
from server.web.form_fields import Note
from server.web.live import LiveRender, live_view, take_digest
from server.web.portal_signin import PortalRoute, see_other
from server.web.removal_view import CaseView, case_url, case_view, live_case_parts, live_case_values
from server.web.templating import render_text

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

#: The filing route takes proof files: the body limit lets the case's debtor send as much as to the API's
#: (server.app, server.api.deps.page_uploader).
PORTAL_UPLOAD_PATH = re.compile(r"/portal/cases/(?P<case_no>[^/]+)/requests")


def size_text(n: int) -> str:
    """A size as people read it: ``10 MB``, ``512 KB``, ``900 B``."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} B"


async def proof_uploads(request: Request) -> list[UploadFile]:
    """The form's proof files (``files``). A browser sends a file input with nothing chosen as a part with an
    empty name, which is a field, not a file: it is no proof (and no error)."""
    form = await request.form()  # parsed once (the CSRF check read it already)
    return [item for item in form.getlist("files") if isinstance(item, UploadFile) and item.filename]


def _values(page: Page, view: CaseView, **extra: Any) -> dict[str, Any]:
    settings = page.context.settings.removal
    return {
        "view": view,
        "grounds": list(RemovalGround),
        "max_files": settings.proof_max_files,
        "max_bytes": settings.proof_max_bytes,
        "statement_max": STATEMENT_MAX,
        "who": "debtor",
        "filed": None,
        "errors": {},
        "form": {"ground": "", "statement": ""},
        "live_url": page.live_url("portal_case", case_no=view.case.case_no),
        **extra,
    }


def _case(page: Page, session: SessionDep, case_no: str, *, settle: bool = True) -> CaseView:
    assert page.user is not None
    context = page.context
    return case_view(
        session,
        page.user,
        case_no,
        Permission.REMOVAL_FILE,
        offline_after_s=context.settings.offline_after_s,
        now=page.now,
        settle_with=context if settle else None,
        before_read=lambda: take_digest(page, session, "portal_case", case_no=case_no),
    )


@router.get("/portal/cases/{case_no}")
def portal_case(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    filed: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    """Your case: its status and seals, your removal request (file it, follow it live, withdraw it)."""
    view = _case(page, session, case_no)
    if filed not in {r.request.id for r in view.requests}:
        filed = None  # a link may say "filed" only of a request of this case: none is made up for the debtor
    return page.render("portal_case.html", **_values(page, view, filed=filed))


@router.post("/portal/cases/{case_no}/requests")
def portal_file(
    page: SignedInPage,
    session: SessionDep,
    case_no: CaseNoPath,
    files: Annotated[list[UploadFile], Depends(proof_uploads)],
    ground: Annotated[str, Form(max_length=32)] = "",
    statement: Annotated[str, Form(max_length=STATEMENT_MAX)] = "",
) -> Response:
    """File a removal request for your case, with proof files (PDF, JPEG, PNG)."""
    user = page.user
    assert user is not None
    view = _case(page, session, case_no, settle=False)  # 404 / 403 before anything is read
    settings = page.context.settings.removal
    form = {"ground": ground, "statement": statement}
    errors: dict[str, str] = {}
    chosen = ground if ground in {g.value for g in RemovalGround} else None
    if chosen is None:
        errors["ground"] = page.t("portal.ground_missing")
    if not statement.strip() or "\x00" in statement:
        errors["statement"] = page.t("portal.statement_missing")
    if len(files) > settings.proof_max_files:
        errors["files"] = page.t("portal.too_many_files", n=len(files), max=settings.proof_max_files)
    if errors:
        return _refused(page, view, status.HTTP_422_UNPROCESSABLE_CONTENT, errors, form)
    assert chosen is not None
    try:
        request = file_with_proofs(  # as the API files: what fails without reading a file fails first
            session,
            actor=user,
            case_no=view.case.case_no,
            ground=RemovalGround(chosen),
            statement=statement,
            uploads=files,
            check=lambda upload: _checked(page, upload, settings),
            store=page.context.stores.proofs,
            settings=settings,
            clock=lambda: page.now,
        )
    except Conflict as exc:
        session.rollback()
        view = _case(page, session, case_no, settle=False)
        return _refused(
            page,
            view,
            status.HTTP_409_CONFLICT,
            {"form": page.t("portal.cannot_file", detail=page.t.refusal(exc))},
            form,
        )
    except ProofRefused as exc:
        session.rollback()
        return _refused(page, view, status.HTTP_422_UNPROCESSABLE_CONTENT, {"files": page.t.refusal(exc)}, form)
    except ProofStorageFailed:
        session.rollback()
        return _refused(
            page, view, status.HTTP_503_SERVICE_UNAVAILABLE, {"files": page.t("portal.storage_failed")}, form
        )
    page.context.live.publish([Change("removal", case_no=request.case_no)])
    return see_other(f"{case_url(request.case_no, '/portal')}?filed={request.id}#request-{request.id}")


def _refused(page: Page, view: CaseView, status_code: int, errors: dict[str, str], form: dict[str, str]) -> Response:
    """The case's page again, with the form as it was sent and why it was refused."""
    return page.render("portal_case.html", status_code, **_values(page, view, errors=errors, form=form))


def _checked(page: Page, upload: UploadFile, settings: RemovalSettings) -> CheckedProof:
    """The upload as a proof file, or :class:`ProofRefused` in the page's words for the usual faults (too large,
    empty, not a PDF/JPEG/PNG), else the check's own words."""
    name = safe_filename(upload.filename or "")
    data = upload.file.read(settings.proof_max_bytes + 1)
    if len(data) > settings.proof_max_bytes:
        raise ProofRefused(page.t("portal.file_too_large", name=name, max=size_text(settings.proof_max_bytes)))
    if not data:
        raise ProofRefused(page.t("portal.file_empty", name=name))
    if sniff(data) is None:
        raise ProofRefused(page.t("portal.file_type", name=name))
    try:
        return check_proof(
            data, filename=name, declared_type=upload.content_type or "", max_bytes=settings.proof_max_bytes
        )
    except ProofRefused as exc:
        raise ProofRefused(page.t("portal.file_refused", detail=page.t.refusal(exc))) from exc


@router.post("/portal/requests/{request_id}/cancel")
def portal_cancel(
    page: SignedInPage,
    session: SessionDep,
    request_id: RowIdPath,
    note: Note = "",
) -> Response:
    """Withdraw your removal request before the judge decides."""
    user = page.user
    assert user is not None
    request = removal_request_for(session, user, request_id, Permission.REMOVAL_FILE, for_update=True)
    case_no = request.case_no
    cancel_request(session, actor=user, request=request, note=note.strip(), now=page.now)
    session.commit()
    page.context.live.publish([Change("removal", case_no=case_no)])
    return see_other(f"{case_url(case_no, '/portal')}#request-{request_id}")


@live_view("portal_case", whole=True)
def portal_case_changes(live: LiveRender, changes: list[Change] | None) -> dict[str, str]:
    """The case's status and seals again when a change concerns them, its requests when one moved or a seal it
    waits for was heard from; only what differs from what this stream sent last (the form being filled in is never
    replaced)."""
    found = live_case_values(live, changes, Permission.REMOVAL_FILE, "debtor")
    if found is None:
        return {}
    view, values = found
    return live_case_parts(changes, view, values, {"status": render_text("portal/_status.html", values)})
