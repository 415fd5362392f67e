"""The evidence exports made, with the checkpoint each led to: later exports carry consistency proofs from them.
Append-only, like the evidence tables.

Revision ID: 3c7e1a9f5d20
Revises: c7a3e9d1f2b4
Create Date: 2026-12-04 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base
from server.core.append_only import append_only_statements, drop_statements

revision: str = "3c7e1a9f5d20"
down_revision: str | None = "c7a3e9d1f2b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_exports",
        sa.Column("id", server.core.base.BigId, nullable=False),
        sa.Column("case_no", sa.String(length=64), nullable=False),
        sa.Column(
            "checkpoint_size",
            sa.BigInteger(),
            nullable=False,
            comment="The tree size of the checkpoint the bundle's proofs lead to.",
        ),
        sa.Column("exported_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("exported_by", sa.String(length=64), nullable=False, comment="The user's name, or the CLI's actor."),
        sa.Column("events", sa.Integer(), nullable=False, comment="How many events the bundle holds."),
        sa.Column(
            "manifest_sha256",
            sa.String(length=64),
            nullable=False,
            comment="SHA-256 (hex) of the bundle's manifest.json.",
        ),
        sa.ForeignKeyConstraint(["case_no"], ["cases.case_no"], name=op.f("fk_evidence_exports_case_no_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_exports")),
    )
    with op.batch_alter_table("evidence_exports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_exports_case_no"), ["case_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_evidence_exports_checkpoint_size"), ["checkpoint_size"], unique=False)
    for statement in append_only_statements("evidence_exports", op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_statements("evidence_exports", op.get_bind().dialect.name):
        op.execute(statement)
    with op.batch_alter_table("evidence_exports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_evidence_exports_checkpoint_size"))
        batch_op.drop_index(batch_op.f("ix_evidence_exports_case_no"))
    op.drop_table("evidence_exports")
