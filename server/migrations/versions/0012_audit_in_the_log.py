"""Audit entries in the Merkle log: each entry names its case and keeps its leaf bytes (``audit_log.record``, canonical
JSON with ``"kind": "audit"``); ``log_leaves`` gets ``audit_id`` beside ``event_id`` (exactly one is set); events
and the log's tables become append-only like the audit log.

The entries already stored get their record (computed as :func:`server.audit.service.entry_record` does; the
UPDATE trigger of ``audit_log`` is dropped around the backfill), their case where the target or the details' case_no
name one, and their leaves after the existing ones, in id order.

Revision ID: c7a3e9d1f2b4
Revises: a3c7e1f5b920
Create Date: 2026-12-12 10:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import server.core.base
from seal_protocol import canonical_json
from server.core.append_only import append_only_statements, drop_statements
from server.evidence import merkle

revision: str = "c7a3e9d1f2b4"
down_revision: str | None = "a3c7e1f5b920"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("audit_log", "events", "log_leaves", "log_nodes", "log_checkpoints", "log_timestamps")
BACKFILL_CHUNK = 1000
OLD_ACTOR_COMMENT = "The actor's username then, or '-'."
NEW_ACTOR_COMMENT = "The user's username then; cli:<OS user or --actor> for the CLI; '-' for an anonymous caller."

audit = sa.table(
    "audit_log",
    sa.column("id", sa.BigInteger()),
    sa.column("at", server.core.base.UTCDateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("case_no", sa.String()),
    sa.column("details", sa.JSON()),
    sa.column("record", sa.LargeBinary()),
)
leaves = sa.table(
    "log_leaves",
    sa.column("leaf_index", sa.BigInteger()),
    sa.column("event_id", sa.BigInteger()),
    sa.column("audit_id", sa.BigInteger()),
    sa.column("leaf_hash", sa.LargeBinary()),
)
nodes = sa.table(
    "log_nodes", sa.column("level", sa.SmallInteger()), sa.column("node_index", sa.BigInteger()), sa.column("hash")
)


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    _run(drop_statements("audit_log", dialect))
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "case_no",
                sa.String(length=64),
                nullable=True,
                comment="The case the action concerns (its seals, alarms, notices...), if any.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "record",
                sa.LargeBinary(),
                nullable=True,
                comment="The entry's leaf bytes in the Merkle log: canonical JSON with kind=audit, verbatim.",
            )
        )
        batch_op.create_index(batch_op.f("ix_audit_log_case_no"), ["case_no"], unique=False)
    _backfill_records()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column("record", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=64), existing_nullable=False, comment=NEW_ACTOR_COMMENT
        )
    with op.batch_alter_table("log_leaves", schema=None) as batch_op:
        batch_op.alter_column("event_id", existing_type=server.core.base.BigId, nullable=True)
        batch_op.add_column(sa.Column("audit_id", server.core.base.BigId, nullable=True))
        batch_op.alter_column(
            "leaf_hash",
            existing_type=sa.LargeBinary(length=32),
            existing_nullable=False,
            comment="SHA-256(0x00 || events.raw), or SHA-256(0x00 || audit_log.record).",
            existing_comment="SHA-256(0x00 || events.raw).",
        )
        batch_op.create_unique_constraint(batch_op.f("uq_log_leaves_audit_id"), ["audit_id"])
        batch_op.create_foreign_key(batch_op.f("fk_log_leaves_audit_id_audit_log"), "audit_log", ["audit_id"], ["id"])
        batch_op.create_check_constraint(
            "one_kind", "(event_id IS NULL AND audit_id IS NOT NULL) OR (event_id IS NOT NULL AND audit_id IS NULL)"
        )
    _append_entries()
    for table in APPEND_ONLY:
        _run(append_only_statements(table, dialect))


def _at_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def _backfill_records() -> None:
    """Each stored entry's record (as server.audit.service.entry_record), and its case: its target if that is a case
    number, else the ``case_no`` its details name (alarms, bindings, commands, notices) if that is one."""
    conn = op.get_bind()
    cases = sa.table("cases", sa.column("case_no", sa.String()))
    known = set(conn.scalars(sa.select(cases.c.case_no)))
    after = 0
    while rows := conn.execute(
        sa.select(audit).where(audit.c.id > after).order_by(audit.c.id).limit(BACKFILL_CHUNK)
    ).all():
        for row in rows:
            named = row.details.get("case_no") if isinstance(row.details, dict) else None
            case_no = row.target if row.target in known else named if named in known else None
            record = {
                "kind": "audit",
                "id": row.id,
                "at": _at_text(row.at),
                "actor": row.actor,
                "action": row.action,
                "target": row.target,
                "case_no": case_no,
                "details": row.details,
            }
            values = {"case_no": case_no, "record": canonical_json(record)}
            conn.execute(audit.update().where(audit.c.id == row.id).values(**values))
        after = rows[-1].id


def _frontier(conn: sa.Connection, size: int) -> list[bytes]:
    """The hashes of the peaks of the log of ``size`` leaves, left to right."""
    found: list[bytes] = []
    for level, index in merkle.peaks(size):
        if level == 0:
            h = conn.scalar(sa.select(leaves.c.leaf_hash).where(leaves.c.leaf_index == index))
        else:
            h = conn.scalar(sa.select(nodes.c.hash).where(nodes.c.level == level, nodes.c.node_index == index))
        if h is None:
            raise RuntimeError(f"the Merkle log lacks its node {(level, index)}: its tables are damaged")
        found.append(h)
    return found


def _append_entries() -> None:
    """Append the stored entries after the log's existing leaves, in id order, a chunk at a time."""
    conn = op.get_bind()
    last = conn.scalar(sa.select(sa.func.max(leaves.c.leaf_index)))
    size = 0 if last is None else last + 1
    frontier = _frontier(conn, size)
    after = 0
    while rows := conn.execute(
        sa.select(audit.c.id, audit.c.record).where(audit.c.id > after).order_by(audit.c.id).limit(BACKFILL_CHUNK)
    ).all():
        frontier, made = merkle.append(size, frontier, [merkle.leaf_hash(record) for _, record in rows])
        made_leaves = [(index, h) for (level, index), h in made if level == 0]
        conn.execute(
            leaves.insert(),
            [
                {"leaf_index": index, "event_id": None, "audit_id": entry_id, "leaf_hash": h}
                for (index, h), (entry_id, _) in zip(made_leaves, rows, strict=True)
            ],
        )
        inner = [{"level": level, "node_index": index, "hash": h} for (level, index), h in made if level > 0]
        if inner:
            conn.execute(nodes.insert(), inner)
        size += len(rows)
        after = rows[-1][0]


def downgrade() -> None:
    """Back to a log of events only: the log is rebuilt from the events, and its checkpoints (over audit leaves
    too) are dropped with their time stamps; the entries lose their case and record."""
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        _run(drop_statements(table, dialect))
    op.execute("DELETE FROM log_timestamps")  # they reference the checkpoints (0011)
    op.execute("DELETE FROM log_checkpoints")
    op.execute("DELETE FROM log_nodes")
    op.execute("DELETE FROM log_leaves")
    with op.batch_alter_table("log_leaves", schema=None) as batch_op:
        batch_op.drop_constraint("one_kind", type_="check")
        batch_op.drop_constraint(batch_op.f("fk_log_leaves_audit_id_audit_log"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_log_leaves_audit_id"), type_="unique")
        batch_op.drop_column("audit_id")
        batch_op.alter_column("event_id", existing_type=server.core.base.BigId, nullable=False)
        batch_op.alter_column(
            "leaf_hash",
            existing_type=sa.LargeBinary(length=32),
            existing_nullable=False,
            comment="SHA-256(0x00 || events.raw).",
        )
    _rebuild_event_leaves()
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_case_no"))
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=64), existing_nullable=False, comment=OLD_ACTOR_COMMENT
        )
        batch_op.drop_column("record")
        batch_op.drop_column("case_no")
    _run(append_only_statements("audit_log", dialect))


def _rebuild_event_leaves() -> None:
    conn = op.get_bind()
    events = sa.table("events", sa.column("id", sa.BigInteger()), sa.column("raw", sa.LargeBinary()))
    size, after = 0, 0
    frontier: list[bytes] = []
    while rows := conn.execute(
        sa.select(events.c.id, events.c.raw).where(events.c.id > after).order_by(events.c.id).limit(BACKFILL_CHUNK)
    ).all():
        frontier, made = merkle.append(size, frontier, [merkle.leaf_hash(raw) for _, raw in rows])
        made_leaves = [(index, h) for (level, index), h in made if level == 0]
        conn.execute(
            leaves.insert(),
            [
                {"leaf_index": i, "event_id": e, "leaf_hash": h}
                for (i, h), (e, _) in zip(made_leaves, rows, strict=True)
            ],
        )
        inner = [{"level": level, "node_index": index, "hash": h} for (level, index), h in made if level > 0]
        if inner:
            conn.execute(nodes.insert(), inner)
        size += len(rows)
        after = rows[-1][0]
