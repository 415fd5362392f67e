"""The logged audit entries a seal's record in the bundle carries (``seals/<device_id>.json`` ``logged``): every
``seal.register`` of the seal (its keys, with the leaves that say from when each holds) and its ``seal.bind`` /
``seal.unbind`` of the case, below the checkpoint, by leaf index. The verifier takes the seal's keys and the ends of
its bindings from these, not from the record's other fields (``docs/evidence.md``)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from server.audit.models import AuditEntry
from server.evidence.models import LogLeaf

JsonDict = dict[str, Any]

#: The actions that set a seal's key (register) or bind it to a case and end the binding.
BINDING_ACTIONS = ("seal.bind", "seal.unbind")


def seal_log(session: Session, device_id: str, case_no: str, below: int) -> list[JsonDict]:
    """``{"entry": the audit entry (its leaf bytes as JSON), "leaf_index": n}`` of each such entry of the seal."""
    query = (
        select(AuditEntry.record, LogLeaf.leaf_index)
        .join(LogLeaf, LogLeaf.audit_id == AuditEntry.id)
        .where(
            AuditEntry.target == device_id,
            LogLeaf.leaf_index < below,
            or_(
                AuditEntry.action == "seal.register",
                and_(AuditEntry.action.in_(BINDING_ACTIONS), AuditEntry.case_no == case_no),
            ),
        )
        .order_by(LogLeaf.leaf_index)
    )
    return [{"entry": json.loads(record), "leaf_index": index} for record, index in session.execute(query)]


def enrolment(logged: list[JsonDict], case_no: str) -> list[JsonDict]:
    """The seal's registrations as the record lists them, from its logged ``seal.register`` entries."""
    return [
        {
            "actor": item["entry"]["actor"],
            "at": item["entry"]["at"],
            # A registration that bound the seal to another case: the record does not name that case.
            "case_no": case_no if item["entry"]["details"].get("case_no") == case_no else None,
            "public_key": item["entry"]["details"].get("public_key"),
        }
        for item in logged
        if item["entry"]["action"] == "seal.register"
    ]
