"""A case's enforcement ruling (执行裁定书) number, which its notice prints as what the seizure rests on: empty for the
cases registered before; no notice is printed for a case until it is recorded (server.notices.facts.missing_facts).

Revision ID: 5c1e7a9d2b40
Revises: 9c2e4a7b1d35
Create Date: 2026-12-07 11:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e7a9d2b40"
down_revision: str | None = "9c2e4a7b1d35"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = "The enforcement ruling (执行裁定书) the seizure rests on, e.g. (2021)苏0214执1234号之一."


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ruling_no", sa.String(length=64), nullable=False, server_default="", comment=COMMENT)
        )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("ruling_no", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("ruling_no")
