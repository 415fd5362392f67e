"""The quarantine's ``device_id`` (and ``quarantine_counts.device_id``) is the seal account a refused message came from:
the device id of its ``seal/v1/<device_id>/…`` topic even when the rest of the topic does not parse
(server.ingest.results.account_of). Only the columns' comments change; rows refused before keep a null ``device_id``
where their topic did not parse.

Revision ID: 80f5e45f057b
Revises: 3f6b8d1e0a27
Create Date: 2026-12-07 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "80f5e45f057b"
down_revision: str | None = "3f6b8d1e0a27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUARANTINE = (
    "The seal account: the device id of its seal/v1/<device_id>/... topic, even if the rest did not parse "
    "(null: a topic under none; rows from before 0025: null if the topic did not parse)."
)
QUARANTINE_BEFORE = "From the topic, if it parsed."
COUNTS = "The seal account, as in the quarantine; empty for topics under no device id."
COUNTS_BEFORE = "From the topic; empty if it named no seal."


def _comment(table: str, nullable: bool, comment: str, before: str) -> None:
    if op.get_bind().dialect.name != "postgresql":  # SQLite keeps no comments (nor copies a table for one)
        return
    op.alter_column(
        table,
        "device_id",
        existing_type=sa.String(length=64),
        existing_nullable=nullable,
        comment=comment,
        existing_comment=before,
    )


def upgrade() -> None:
    _comment("quarantine", True, QUARANTINE, QUARANTINE_BEFORE)
    _comment("quarantine_counts", False, COUNTS, COUNTS_BEFORE)


def downgrade() -> None:
    _comment("quarantine", True, QUARANTINE_BEFORE, QUARANTINE)
    _comment("quarantine_counts", False, COUNTS_BEFORE, COUNTS)
