"""The Merkle log over the stored events: its leaves, the hashes of its complete subtrees, its signed checkpoints.

The leaves of the events already stored are appended in the order of their ids (the order they were stored).

Revision ID: 6c3e2a9f1d08
Revises: 5a1c0e7d9b42
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base
from server.evidence import merkle

revision: str = "6c3e2a9f1d08"
down_revision: str | None = "5a1c0e7d9b42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_CHUNK = 1000


def upgrade() -> None:
    leaves = op.create_table(
        "log_leaves",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", server.core.base.BigId, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False, comment="SHA-256(0x00 || events.raw)."),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_log_leaves_event_id_events")),
        sa.PrimaryKeyConstraint("leaf_index", name=op.f("pk_log_leaves")),
        sa.UniqueConstraint("event_id", name=op.f("uq_log_leaves_event_id")),
    )
    nodes = op.create_table(
        "log_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name=op.f("pk_log_nodes")),
    )
    op.create_table(
        "log_checkpoints",
        sa.Column("id", server.core.base.BigId, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False, comment="The signed note, byte for byte as served."),
        sa.Column("made_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_log_checkpoints")),
        sa.UniqueConstraint("tree_size", name=op.f("uq_log_checkpoints_tree_size")),
    )
    _backfill(leaves, nodes)


def _backfill(leaves: sa.Table, nodes: sa.Table) -> None:
    """Append the stored events, in id order, a chunk at a time (the frontier carries over between chunks)."""
    conn = op.get_bind()
    events = sa.table("events", sa.column("id", sa.BigInteger()), sa.column("raw", sa.LargeBinary()))
    size, after = 0, None
    frontier: list[bytes] = []
    while True:
        query = sa.select(events.c.id, events.c.raw).order_by(events.c.id).limit(BACKFILL_CHUNK)
        if after is not None:
            query = query.where(events.c.id > after)
        rows = conn.execute(query).all()
        if not rows:
            return
        frontier, made = merkle.append(size, frontier, [merkle.leaf_hash(raw) for _, raw in rows])
        made_leaves = [(index, h) for (level, index), h in made if level == 0]
        conn.execute(
            leaves.insert(),
            [
                {"leaf_index": index, "event_id": event_id, "leaf_hash": h}
                for (index, h), (event_id, _) in zip(made_leaves, rows, strict=True)
            ],
        )
        inner = [{"level": level, "node_index": index, "hash": h} for (level, index), h in made if level > 0]
        if inner:
            conn.execute(nodes.insert(), inner)
        size += len(rows)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table("log_checkpoints")
    op.drop_table("log_nodes")
    op.drop_table("log_leaves")
