"""An index of the quarantine by (device_id, reason, id): the ingest reads a seal's latest events refused for their
case (``wrong_case``, ``unbound_seal``) when a picture comes that no stored event names (server.ingest.late_chain),
inside its transaction; with the ``device_id`` index alone that read ranked every quarantine row of the seal, a cost
that grew with the seal's lifetime (tens of milliseconds at 44,000 rows).

Revision ID: 9d4f2b7e1c63
Revises: 3a9e6c1f4b27
Create Date: 2026-12-06 10:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9d4f2b7e1c63"
down_revision: str | None = "3a9e6c1f4b27"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_quarantine_device_id_reason_id"), "quarantine", ["device_id", "reason", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_quarantine_device_id_reason_id"), table_name="quarantine")
