"""``command_forms``: the one-use ids of the pages' command forms, so that a form sent twice (a double click, the back
button) sends one command (server.web.form_ids).

Revision ID: 9c2e4a7b1d35
Revises: 6c2e9a4b7d13
Create Date: 2026-12-08 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.core.base import BigId, UTCDateTime

revision: str = "9c2e4a7b1d35"
down_revision: str | None = "6c2e9a4b7d13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "command_forms",
        sa.Column("form_id", sa.String(length=64), nullable=False, comment="The form's one-use id."),
        sa.Column("user_id", BigId, nullable=False, comment="Who sent it."),
        sa.Column("command_id", BigId, nullable=True, comment="The command it sent."),
        sa.Column("used_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["command_id"], ["commands.id"], name=op.f("fk_command_forms_command_id_commands")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_command_forms_user_id_users")),
        sa.PrimaryKeyConstraint("form_id", name=op.f("pk_command_forms")),
    )
    op.create_index(op.f("ix_command_forms_used_at"), "command_forms", ["used_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_command_forms_used_at"), table_name="command_forms")
    op.drop_table("command_forms")
