"""An open removal request holds its case (its seals are unbound, and the case closed, only through the request);
the seals a judge decided to lift without their acknowledgement, and what the officer found of them; why a notice
was revoked. A case with an open removal request is marked held by it.

Revision ID: 9b4e6d2a8c51
Revises: 8f2d6b4c1e37
Create Date: 2026-12-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "9b4e6d2a8c51"
down_revision: str | None = "8f2d6b4c1e37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "held_by",
                sa.String(length=64),
                nullable=True,
                comment="What holds the case, e.g. removal-request:12 while that request is open: its seals are then "
                "unbound, and the case closed, only through it.",
            )
        )
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "revoked_reason",
                sa.String(length=16),
                nullable=True,
                comment="lifted, unbound or revoked (server.notices.service.Revocation).",
            )
        )
        batch_op.add_column(
            sa.Column("revoked_note", sa.Text(), nullable=True, comment="Why, in words (shown on the notice's page).")
        )
    op.create_table(
        "removal_waivers",
        sa.Column("id", server.core.base.BigId, nullable=False),
        sa.Column("request_id", server.core.base.BigId, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("decided_by", server.core.base.BigId, nullable=False),
        sa.Column("decided_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False, comment="The judge's reasons."),
        sa.Column(
            "found",
            sa.String(length=16),
            nullable=True,
            comment="removed, destroyed or missing, as the officer found it on site (server.removal.lifting).",
        ),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], name=op.f("fk_removal_waivers_decided_by_users")),
        sa.ForeignKeyConstraint(["device_id"], ["seals.device_id"], name=op.f("fk_removal_waivers_device_id_seals")),
        sa.ForeignKeyConstraint(
            ["request_id"], ["removal_requests.id"], name=op.f("fk_removal_waivers_request_id_removal_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_waivers")),
        sa.UniqueConstraint("request_id", "device_id", name=op.f("uq_removal_waivers_request_id_device_id")),
    )
    with op.batch_alter_table("removal_waivers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_removal_waivers_request_id"), ["request_id"], unique=False)
    _hold_cases_of_open_requests()


def _hold_cases_of_open_requests() -> None:
    conn = op.get_bind()
    cases = sa.table("cases", sa.column("case_no", sa.String()), sa.column("held_by", sa.String()))
    requests = sa.table("removal_requests", sa.column("id", sa.BigInteger()), sa.column("open_case_no", sa.String()))
    open_requests = sa.select(requests.c.id, requests.c.open_case_no).where(requests.c.open_case_no.is_not(None))
    for row in conn.execute(open_requests).all():
        held = cases.update().where(cases.c.case_no == row.open_case_no).values(held_by=f"removal-request:{row.id}")
        conn.execute(held)


def downgrade() -> None:
    with op.batch_alter_table("removal_waivers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_removal_waivers_request_id"))
    op.drop_table("removal_waivers")
    with op.batch_alter_table("notices", schema=None) as batch_op:
        batch_op.drop_column("revoked_note")
        batch_op.drop_column("revoked_reason")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("held_by")
