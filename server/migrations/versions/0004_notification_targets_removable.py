"""Notification targets can be removed: ``notifications.target_id`` becomes nullable (the row keeps role and URL).

Revision ID: 04f0a406ba7f
Revises: 52e8f1b110ea
Create Date: 2026-11-26 06:15:57.771165
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "04f0a406ba7f"
down_revision: str | None = "52e8f1b110ea"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_COMMENT = "Null once the target is removed (role and url stay)."


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("target_id", existing_type=_ID, nullable=True, comment=_COMMENT, existing_comment=None)


def downgrade() -> None:
    """Fails while notifications of removed targets exist."""
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("target_id", existing_type=_ID, nullable=False, comment=None, existing_comment=_COMMENT)
