"""Indexes of the events for the pages on a big case: a seal's events newest first (``device_id, id``), a seal's of
one type (``device_id, type, id``: the seal rows' and the seal page's last heartbeat, its agent's starts) and the
case's events but heartbeats (partial, ``type <> 'heartbeat'``: the timeline). Without them the case page, the seal
page and ``/api/seals/{id}/events`` walked the case's whole ``case_no, id`` index back, through every heartbeat of
every other seal, to find the few rows they show (0.1 s a query at 10^5 events, and a query per seal).

Revision ID: 8d4f2b6e1a93
Revises: 5c1e7a9d2b40
Create Date: 2026-12-07 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d4f2b6e1a93"
down_revision: str | None = "5c1e7a9d2b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHOWN = "type <> 'heartbeat'"  # server.evidence.models.SHOWN_EVENTS as it was written here


def upgrade() -> None:
    op.create_index(op.f("ix_events_device_id_id"), "events", ["device_id", "id"], unique=False)
    op.create_index(op.f("ix_events_device_id_type_id"), "events", ["device_id", "type", "id"], unique=False)
    op.create_index(
        "ix_events_case_no_id_shown",
        "events",
        ["case_no", "id"],
        unique=False,
        sqlite_where=sa.text(SHOWN),
        postgresql_where=sa.text(SHOWN),
    )


def downgrade() -> None:
    op.drop_index("ix_events_case_no_id_shown", table_name="events")
    op.drop_index(op.f("ix_events_device_id_type_id"), table_name="events")
    op.drop_index(op.f("ix_events_device_id_id"), table_name="events")
