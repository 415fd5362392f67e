"""An answer belongs to the case its event is stored in: a command whose stored answer is an event of another case
(its seal was moved, and refused — or acknowledged — a copy of the old case's command the broker held for it) loses
that answer (``answered_at``, ``answer_seq``, ``result``, ``reason``) and is ``expired`` again, as the move made it.
The ingest no longer attaches such an answer (server.commands.service.apply_answer, ``other_case``); the rows it
attached before would show the old case's parties what the seal said, and when, while it guarded another case. The
event itself stays where it was stored, the other case's evidence.

Not undone by the downgrade: those answers were never the command's case's.

Revision ID: 3a9e6c1f4b27
Revises: 7c3f9a2e5b18
Create Date: 2026-12-06 09:30:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "3a9e6c1f4b27"
down_revision: str | None = "7c3f9a2e5b18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain DateTime, not the models' UTCDateTime (see 0016): it binds UTC as the column stores it.
    stamp = sa.DateTime(timezone=True)
    commands = sa.table(
        "commands",
        sa.column("device_id", sa.String),
        sa.column("case_no", sa.String),
        sa.column("state", sa.String),
        sa.column("answered_at", stamp),
        sa.column("answer_seq", sa.BigInteger),
        sa.column("result", sa.JSON),
        sa.column("reason", sa.String),
        sa.column("updated_at", stamp),
    )
    events = sa.table(
        "events", sa.column("device_id", sa.String), sa.column("seq", sa.BigInteger), sa.column("case_no", sa.String)
    )
    elsewhere = (
        sa.select(sa.literal(1))
        .where(
            events.c.device_id == commands.c.device_id,
            events.c.seq == commands.c.answer_seq,
            events.c.case_no != commands.c.case_no,
        )
        .exists()
    )
    op.execute(
        sa.update(commands)
        .where(commands.c.answer_seq.is_not(None), elsewhere)
        .values(
            state="expired",
            answered_at=None,
            answer_seq=None,
            result=sa.null(),
            reason=None,
            updated_at=sa.bindparam("now", datetime.now(UTC), type_=stamp),
        )
    )


def downgrade() -> None:
    pass
