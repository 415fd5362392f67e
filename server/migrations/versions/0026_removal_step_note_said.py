"""A removal request's step keeps the server's note as the catalogue's key and values (``removal_steps.note_said``),
so that a page says it in its reader's language; ``note`` keeps it written out, Chinese first with English, for the
API, the audit log and the evidence report. Steps stored before keep a null ``note_said`` and their note as written.

Revision ID: 6c2e9a4b7d13
Revises: 80f5e45f057b
Create Date: 2026-12-07 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "6c2e9a4b7d13"
down_revision: str | None = "80f5e45f057b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("removal_steps") as batch:
        batch.add_column(
            sa.Column(
                "note_said",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
                comment="The server's note as a catalogue key and its values (server.words.said_json), said in the "
                "reader's language; null for a person's note, and for every step stored before migration 0026.",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("removal_steps") as batch:
        batch.drop_column("note_said")
