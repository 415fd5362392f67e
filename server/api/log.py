"""The Merkle log over the stored events: its latest signed checkpoint, its public key, the checkpoints' RFC 3161
time stamps, and proofs against it.

The checkpoint, its time stamp, the key and a consistency proof between two signed checkpoints are public (they
reveal hashes only: whoever verifies a bundle against a checkpoint fetched here needs the proof, and may have no
login); an event's inclusion proof is for whoever may read the event's case; an audit entry's
(``/inclusion/audit/{id}``) for the judge of the entry's case and the clerk.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import ContextDep, CurrentUser, SessionDep
from server.api.routing import ValidatedRoute
from server.audit.models import AuditEntry
from server.auth.access import Permission, check_object_visible
from server.errors import Conflict, NotFound, found
from server.evidence import log, timestamps
from server.evidence.models import Event, LogLeaf

router = APIRouter(prefix="/log", tags=["log"], route_class=ValidatedRoute)

NOTE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": "A C2SP tlog-checkpoint in a signed note."},
    404: {"description": "No checkpoint signed yet"},
}
TreeSize = Annotated[int, Query(ge=1, le=2**62, description="A tree size (number of leaves).")]
StampedSize = Annotated[
    int | None,
    Query(ge=1, le=2**62, description="The checkpoint's tree size; left out: the latest checkpoint with a time stamp."),
]
TOKEN: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/timestamp-reply": {}},
        "description": "The RFC 3161 TimeStampResp (DER) over SHA-256 of the checkpoint's note bytes; the header "
        "X-Checkpoint-Size names the checkpoint.",
    },
    404: {"description": "No such checkpoint, or it has no time stamp (yet)"},
}
CHAIN: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pem-certificate-chain": {}}, "description": "The TSA's certificates, PEM."},
    404: {"description": "No such checkpoint, or it has no time stamp (yet)"},
}


class InclusionProof(BaseModel):
    event_id: str = Field(description="The seal's id of the event.")
    leaf_index: int = Field(description="The event's leaf in the log.")
    tree_size: int = Field(description="The size of the tree of `checkpoint`.")
    leaf_hash: str = Field(description="SHA-256(0x00 || the event's signed bytes), hex.")
    proof: list[str] = Field(description="The RFC 9162 inclusion proof, bottom up, hex.")
    checkpoint: str = Field(description="The signed checkpoint the proof leads to.")


class AuditInclusionProof(BaseModel):
    audit_id: int = Field(description="The audit entry's id.")
    case_no: str = Field(description="The case the entry concerns.")
    record: str = Field(description="The entry's leaf bytes (canonical JSON, kind=audit), as UTF-8 text.")
    leaf_index: int = Field(description="The entry's leaf in the log.")
    tree_size: int = Field(description="The size of the tree of `checkpoint`.")
    leaf_hash: str = Field(description="SHA-256(0x00 || record), hex.")
    proof: list[str] = Field(description="The RFC 9162 inclusion proof, bottom up, hex.")
    checkpoint: str = Field(description="The signed checkpoint the proof leads to.")


class ConsistencyProof(BaseModel):
    old_size: int
    new_size: int
    proof: list[str] = Field(description="The RFC 9162 consistency proof, hex.")


@router.get("/checkpoint", response_class=PlainTextResponse, responses=NOTE)
def latest_checkpoint(session: SessionDep) -> PlainTextResponse:
    """The log's latest signed checkpoint."""
    row = found(log.latest_checkpoint(session), "no checkpoint of the log has been signed yet")
    return PlainTextResponse(row.note, media_type="text/plain; charset=utf-8")


@router.get("/checkpoint/timestamp", response_class=Response, responses=TOKEN)
def checkpoint_timestamp(session: SessionDep, size: StampedSize = None) -> Response:
    """The RFC 3161 time stamp of a checkpoint, as the time-stamping authority returned it."""
    token, _chain, tree_size = _stamp(session, size)
    headers = {"X-Checkpoint-Size": str(tree_size)}
    return Response(token, media_type="application/timestamp-reply", headers=headers)


@router.get("/checkpoint/timestamp/chain", response_class=Response, responses=CHAIN)
def checkpoint_timestamp_chain(session: SessionDep, size: StampedSize = None) -> Response:
    """The certificate chain of the time-stamping authority kept with a checkpoint's time stamp."""
    _token, chain, tree_size = _stamp(session, size)
    headers = {"X-Checkpoint-Size": str(tree_size)}
    return Response(chain, media_type="application/pem-certificate-chain", headers=headers)


def _stamp(session: SessionDep, size: int | None) -> tuple[bytes, bytes, int]:
    what = "no checkpoint has a time stamp yet" if size is None else f"no checkpoint of tree size {size}"
    checkpoint = found(timestamps.checkpoint_of_size(session, size), what)
    stamp = found(timestamps.timestamp_of(session, checkpoint), f"the checkpoint of tree size {size} has no time stamp")
    return stamp[0], stamp[1], checkpoint.tree_size


@router.get("/key", response_class=PlainTextResponse, responses={200: {"content": {"text/plain": {}}}})
def log_key(context: ContextDep) -> PlainTextResponse:
    """The log's public key as a signed-note verifier key (name+key id+base64 key)."""
    return PlainTextResponse(context.log_key.verifier() + "\n", media_type="text/plain; charset=utf-8")


@router.get("/inclusion/{event_id}", responses={404: {"description": "No such event, or not of one of your cases"}})
def inclusion_proof(
    event_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="The seal's id of the event (UUID).")],
    user: CurrentUser,
    session: SessionDep,
) -> InclusionProof:
    """The proof that an event is in the log, against the latest checkpoint."""
    event = session.scalars(select(Event).where(Event.event_id == event_id)).one_or_none()
    if event is None:
        raise NotFound(f"unknown event {event_id}")
    check_object_visible(session, user, event.case_no, Permission.EVENT_READ, what=f"event {event_id}")
    leaf = found(log.leaf_of(session, event), f"event {event_id} is not in the log")
    size, proof, note = _proof(session, leaf, f"event {event_id}")
    return InclusionProof(
        event_id=event_id,
        leaf_index=leaf.leaf_index,
        tree_size=size,
        leaf_hash=leaf.leaf_hash.hex(),
        proof=proof,
        checkpoint=note,
    )


@router.get(
    "/inclusion/audit/{audit_id}", responses={404: {"description": "No such entry, or not of one of your cases"}}
)
def audit_inclusion_proof(
    audit_id: Annotated[int, Path(ge=1, le=2**62, description="The audit entry's id.")],
    user: CurrentUser,
    session: SessionDep,
) -> AuditInclusionProof:
    """The proof that an audit entry of a case is in the log, against the latest checkpoint."""
    entry = session.get(AuditEntry, audit_id)
    if entry is None or entry.case_no is None:  # entries of no case are the administrator's (the audit page)
        raise NotFound(f"unknown audit entry {audit_id}")
    what = f"audit entry {audit_id}"
    check_object_visible(session, user, entry.case_no, Permission.AUDIT_PROOF, what=what)
    leaf = found(log.leaf_of_audit(session, entry), f"{what} is not in the log")
    size, proof, note = _proof(session, leaf, what)
    return AuditInclusionProof(
        audit_id=audit_id,
        case_no=entry.case_no,
        record=entry.record.decode("utf-8"),
        leaf_index=leaf.leaf_index,
        tree_size=size,
        leaf_hash=leaf.leaf_hash.hex(),
        proof=proof,
        checkpoint=note,
    )


def _proof(session: Session, leaf: LogLeaf, what: str) -> tuple[int, list[str], str]:
    """The latest checkpoint's size, the leaf's inclusion proof against it (hex), and its note."""
    checkpoint = log.latest_checkpoint(session)
    if checkpoint is None or checkpoint.tree_size <= leaf.leaf_index:
        raise Conflict(
            "该记录尚未收入已签名的检查点，请几秒后再试。 / "
            f"{what} is not in a signed checkpoint yet: ask again in a few seconds"
        )
    proof = log.inclusion_proof(session, leaf.leaf_index, checkpoint.tree_size)
    return checkpoint.tree_size, [h.hex() for h in proof], checkpoint.note


@router.get(
    "/consistency",
    responses={
        400: {"description": "`old` is larger than `new`"},
        404: {"description": "No checkpoint of one of the sizes was signed"},
    },
)
def consistency_proof(old: TreeSize, new: TreeSize, session: SessionDep) -> ConsistencyProof:
    """The proof that the log of ``old`` leaves is a prefix of the log of ``new`` leaves, each the size of a checkpoint
    the log signed. Public, as the checkpoints are: it reveals hashes only, and only those linking signed checkpoints
    (not the leaves after the latest one)."""
    for size in (old, new):
        found(timestamps.checkpoint_of_size(session, size), f"no checkpoint of tree size {size} was signed")
    proof = log.consistency_proof(session, old, new)
    return ConsistencyProof(old_size=old, new_size=new, proof=[h.hex() for h in proof])
