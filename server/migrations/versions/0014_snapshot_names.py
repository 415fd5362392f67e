"""The pictures the stored events name (``snapshot_names``): a picture is filed under the case whose events from its
seal name it, not under the case its seal was bound to when the picture arrived (:mod:`server.ingest.snapshot_filing`).

Backfilled from the stored events whose bytes mention ``"snapshot`` (their payload's ``snapshots`` list or
``snapshot``). The pictures filed under another case than the one naming them (a seal that drained its outbox after
it was moved to another case) are filed again as the ingest now does: under each naming case of their seal, and taken
from every case none of whose events name those bytes.

Revision ID: 8d41b6f0c2e7
Revises: 3c7e1a9f5d20
Create Date: 2026-12-06 00:00:00.000000
"""

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "8d41b6f0c2e7"
down_revision: str | None = "3c7e1a9f5d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 500
_SHA256 = re.compile(r"[0-9a-f]{64}")

events = sa.table(
    "events",
    sa.column("id", sa.BigInteger()),
    sa.column("device_id", sa.String()),
    sa.column("case_no", sa.String()),
    sa.column("raw", sa.LargeBinary()),
)
names = sa.table(
    "snapshot_names",
    sa.column("sha256", sa.String()),
    sa.column("device_id", sa.String()),
    sa.column("case_no", sa.String()),
)
snapshots = sa.table(
    "snapshots",
    sa.column("id", sa.BigInteger()),
    sa.column("sha256", sa.String()),
    sa.column("device_id", sa.String()),
    sa.column("case_no", sa.String()),
    sa.column("size", sa.Integer()),
    sa.column("received_at", server.core.base.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    # Each seal's delivery its own row: a seal's provisional row is never the one another seal's delivery of the
    # same bytes to that case relies on (:mod:`server.ingest.snapshot_filing`).
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_snapshots_sha256_case_no"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_snapshots_sha256_device_id_case_no"), ["sha256", "device_id", "case_no"]
        )
    op.create_table(
        "snapshot_names",
        sa.Column("id", server.core.base.BigId, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("case_no", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["case_no"], ["cases.case_no"], name=op.f("fk_snapshot_names_case_no_cases")),
        sa.ForeignKeyConstraint(["device_id"], ["seals.device_id"], name=op.f("fk_snapshot_names_device_id_seals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_names")),
        sa.UniqueConstraint("sha256", "device_id", "case_no", name=op.f("uq_snapshot_names_sha256_device_id_case_no")),
    )
    with op.batch_alter_table("snapshot_names", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snapshot_names_case_no"), ["case_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_snapshot_names_device_id"), ["device_id"], unique=False)
    found = _backfill_names()
    if found:
        _refile(found)


def downgrade() -> None:
    conn = op.get_bind()
    keep = sa.select(sa.func.min(snapshots.c.id)).group_by(snapshots.c.sha256, snapshots.c.case_no)
    conn.execute(snapshots.delete().where(snapshots.c.id.not_in(keep.scalar_subquery())))  # one row per case again
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_snapshots_sha256_device_id_case_no"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_snapshots_sha256_case_no"), ["sha256", "case_no"])
    with op.batch_alter_table("snapshot_names", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshot_names_device_id"))
        batch_op.drop_index(batch_op.f("ix_snapshot_names_case_no"))
    op.drop_table("snapshot_names")


def _named(raw: bytes) -> list[str]:
    """The pictures a stored event names (as :func:`server.evidence.queries.named_pictures`, of a snapshot's form)."""
    try:
        payload: Any = json.loads(raw).get("payload")
    except (ValueError, AttributeError):
        return []
    if not isinstance(payload, dict):
        return []
    listed = payload.get("snapshots")
    found = [s for s in listed if isinstance(s, str)] if isinstance(listed, list) else []
    single = payload.get("snapshot")
    if isinstance(single, str):
        found.append(single)
    return [s for s in found if _SHA256.fullmatch(s)]


def _backfill_names() -> set[tuple[str, str, str]]:
    conn = op.get_bind()
    found: set[tuple[str, str, str]] = set()
    last = 0
    needle = sa.literal(b'"snapshot', sa.LargeBinary())
    if conn.dialect.name == "sqlite":  # its LIKE does not match a BLOB against a BLOB
        mention = sa.func.instr(events.c.raw, needle) > 0
    else:
        mention = events.c.raw.op("LIKE")(sa.literal(b'%"snapshot%', sa.LargeBinary()))
    while True:
        query = sa.select(events.c.id, events.c.device_id, events.c.case_no, events.c.raw).where(
            events.c.id > last, mention
        )
        rows = conn.execute(query.order_by(events.c.id).limit(CHUNK)).all()
        if not rows:
            break
        for event_id, device_id, case_no, raw in rows:
            found.update((sha, device_id, case_no) for sha in _named(bytes(raw)))
            last = event_id
    ordered = sorted(found)
    for start in range(0, len(ordered), CHUNK):
        part = ordered[start : start + CHUNK]
        conn.execute(names.insert(), [{"sha256": s, "device_id": d, "case_no": c} for s, d, c in part])
    return found


def _refile(found: set[tuple[str, str, str]]) -> None:
    """Each named picture held from its seal under its naming case; its seal's rows in cases that name none of its
    bytes moved there, or removed (as :func:`server.ingest.snapshot_filing._claim` does)."""
    conn = op.get_bind()
    shas = sorted({sha for sha, _, _ in found})
    held: dict[tuple[str, str], dict[str, Any]] = {}
    for start in range(0, len(shas), CHUNK):
        query = sa.select(snapshots).where(snapshots.c.sha256.in_(shas[start : start + CHUNK]))
        for stored in conn.execute(query.order_by(snapshots.c.id)).mappings():
            held[(stored["sha256"], stored["case_no"])] = dict(stored)
    for sha, device_id, case_no in sorted(found):
        ours = [row for (s, _), row in held.items() if s == sha and row["device_id"] == device_id]
        if not ours:
            continue
        named_cases = {c for s, _, c in found if s == sha}
        provisional = [row for row in ours if row["case_no"] not in named_cases]
        if (sha, case_no) not in held:
            if provisional:
                row = provisional.pop(0)
                del held[(sha, row["case_no"])]
                conn.execute(snapshots.update().where(snapshots.c.id == row["id"]).values(case_no=case_no))
                row["case_no"] = case_no
            else:
                row = {**ours[0], "case_no": case_no}
                del row["id"]
                conn.execute(snapshots.insert().values(**row))
            held[(sha, case_no)] = row
        for row in provisional:
            del held[(sha, row["case_no"])]
            conn.execute(snapshots.delete().where(snapshots.c.id == row["id"]))
