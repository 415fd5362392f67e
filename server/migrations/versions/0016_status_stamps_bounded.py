"""Each seal's stored status stamp bounded by the court's clock: a ``status_ts`` later than now + the skew (a seal
that once connected with its clock far ahead, or a forged status) would make every later status of the seal, its
real Last Will among them, "older than the stored one". Such a stamp is set to that bound, now + the skew, as the
ingest bounds the stamps it receives by their receipt + the skew (server.ingest.statuses): a seal's next status
stands once the skew has passed.

Not undone by the downgrade: the stamps replaced were not the seal's clock's truth.

Revision ID: 7c3f9a2e5b18
Revises: 5e2b8c4a1d70
Create Date: 2026-12-06 03:20:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "7c3f9a2e5b18"
down_revision: str | None = "5e2b8c4a1d70"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: server.ingest.statuses.STATUS_CLOCK_SKEW when this was written (a migration keeps its own constants).
SKEW = timedelta(minutes=5)


def upgrade() -> None:
    # A plain DateTime, not the models' UTCDateTime: a TypeDecorator made here would leave its comparator class in a
    # reference cycle with every run (the ingest's tests count cycles). It binds UTC as the column stores it, naive
    # text on SQLite (a UTC time, whose zone SQLite's DATETIME leaves out) or a timestamptz on PostgreSQL.
    stamp = sa.DateTime(timezone=True)
    seals = sa.table("seals", sa.column("status_ts", stamp), sa.column("status_changed_at", stamp))
    cut = sa.bindparam("cut", datetime.now(UTC) + SKEW, type_=stamp)
    op.execute(sa.update(seals).where(seals.c.status_ts > cut).values(status_ts=cut))


def downgrade() -> None:
    pass
