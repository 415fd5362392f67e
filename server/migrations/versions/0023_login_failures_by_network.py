"""Failed logins are counted per IPv6 /48 as well: ``login_failures.client_network`` and its index.

One holder of many /64s (a home line's /56, a /48) could otherwise add up their limits and reach the per-user brake
alone, locking a user out (server.auth.throttle). Failures recorded before have no network (null): they count for
their own /64 only, and leave the window within ``[auth] login_window_s`` of the upgrade.

Revision ID: 5e1b7c3a9d24
Revises: 9a4d2c7e5b13
Create Date: 2026-12-07 07:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e1b7c3a9d24"
down_revision: str | None = "9a4d2c7e5b13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "client_network",
                sa.String(length=64),
                nullable=True,
                comment="An IPv6 address's /48; null for IPv4 (and for failures recorded before 0023).",
            )
        )
        batch_op.create_index(batch_op.f("ix_login_failures_client_network_at"), ["client_network", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_failures_client_network_at"))
        batch_op.drop_column("client_network")
