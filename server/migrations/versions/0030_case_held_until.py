"""``chain_state.case_held_until``: a moved seal's events refused as ``wrong_case`` that the chain may still carry
into their old case (its drain cut between batches: A's run before B's first event) raise ``case_mismatch`` only if
they stay refused — when a stored successor fails to place them, or at this time (server.ingest.case_hold). Null for
every row from before: nothing was held.

Revision ID: 3f7b9e2c4a61
Revises: 8d4f2b6e1a93
Create Date: 2026-12-09 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "3f7b9e2c4a61"
down_revision: str | None = "8d4f2b6e1a93"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chain_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "case_held_until",
                server.core.base.UTCDateTime(timezone=True),
                nullable=True,
                comment="While the seal's events refused as wrong_case may still be carried into their old case by "
                "the chain (a moved seal's drain): when case_mismatch is raised for those still refused (null: none "
                "held).",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("chain_state", schema=None) as batch_op:
        batch_op.drop_column("case_held_until")
