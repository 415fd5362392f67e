"""Courts by code; a case's court, notice fields and status; a seal's armed state from its signed events.

A case whose number is an enforcement case number gets its court from the number's court code; that court is
registered with the name the case carried (its code if none). A case whose number is not one (a legacy number)
keeps no court. A case with a seal bound is ``sealed``, any other ``open``. Each seal's armed state is read from its
latest event that tells.

Revision ID: 7d4b1c2e9a10
Revises: 6c3e2a9f1d08
Create Date: 2026-12-04 15:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import server.core.base
from server.seals.case_numbers import InvalidCaseNumber, parse_case_no

revision: str = "7d4b1c2e9a10"
down_revision: str | None = "6c3e2a9f1d08"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ARMED_TYPES = ("armed", "disarmed", "heartbeat", "agent_started")


def upgrade() -> None:
    op.create_table(
        "courts",
        sa.Column("code", sa.String(length=16), nullable=False, comment="法院代字, e.g. 苏0214."),
        sa.Column("name", sa.String(length=128), nullable=False, comment="e.g. 无锡市滨湖区人民法院."),
        sa.Column("phone", sa.String(length=32), nullable=False, comment="The number printed on notices."),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_courts")),
    )
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "court_code",
                sa.String(length=16),
                nullable=True,
                comment="The court the case number names; null for a legacy number.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "judge_phone",
                sa.String(length=32),
                nullable=False,
                server_default="",
                comment="The judge's number on the notice.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "sealed_property",
                sa.String(length=256),
                nullable=False,
                server_default="",
                comment="What is sealed (查封财产).",
            )
        )
        batch_op.add_column(
            sa.Column("seizure_expires_on", sa.Date(), nullable=True, comment="查封期限: the last day of the seizure.")
        )
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="open", comment="A CaseStatus.")
        )
        batch_op.add_column(sa.Column("status_changed_at", server.core.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_cases_court_code"), ["court_code"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_cases_court_code_courts"), "courts", ["court_code"], ["code"])
    with op.batch_alter_table("seals", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "armed",
                sa.Boolean(),
                nullable=True,
                comment="Armed, as the seal's latest signed event that tells says.",
            )
        )
        batch_op.add_column(
            sa.Column(
                "armed_at", server.core.base.UTCDateTime(timezone=True), nullable=True, comment="The ts of that event."
            )
        )
        batch_op.add_column(sa.Column("armed_seq", sa.BigInteger(), nullable=True, comment="The seq of that event."))
    _backfill()
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("judge_phone", server_default=None)
        batch_op.alter_column("sealed_property", server_default=None)
        batch_op.alter_column("status", server_default=None)
        batch_op.drop_column("court")


def _backfill() -> None:
    conn = op.get_bind()
    cases = sa.table(
        "cases",
        sa.column("id", sa.BigInteger()),
        sa.column("case_no", sa.String()),
        sa.column("court", sa.String()),
        sa.column("court_code", sa.String()),
        sa.column("status", sa.String()),
        sa.column("status_changed_at", server.core.base.UTCDateTime(timezone=True)),
    )
    courts = sa.table("courts", sa.column("code"), sa.column("name"), sa.column("phone"), sa.column("address"))
    seals = sa.table(
        "seals",
        sa.column("device_id", sa.String()),
        sa.column("case_no", sa.String()),
        sa.column("armed", sa.Boolean()),
        sa.column("armed_at", server.core.base.UTCDateTime(timezone=True)),
        sa.column("armed_seq", sa.BigInteger()),
    )
    events = sa.table(
        "events",
        sa.column("device_id", sa.String()),
        sa.column("seq", sa.BigInteger()),
        sa.column("type", sa.String()),
        sa.column("ts", server.core.base.UTCDateTime(timezone=True)),
        sa.column("payload", sa.JSON()),
    )
    now = datetime.now(UTC)
    bound = {row.case_no for row in conn.execute(sa.select(seals.c.case_no).where(seals.c.case_no.is_not(None)))}
    known: set[str] = set()
    for row in conn.execute(sa.select(cases.c.id, cases.c.case_no, cases.c.court)).all():
        try:
            code: str | None = parse_case_no(row.case_no).court_code
        except InvalidCaseNumber:
            code = None
        if code is not None and code not in known:
            conn.execute(
                courts.insert().values(code=code, name=(row.court or "").strip() or code, phone="", address="")
            )
            known.add(code)
        status = "sealed" if row.case_no in bound else "open"
        conn.execute(
            cases.update().where(cases.c.id == row.id).values(court_code=code, status=status, status_changed_at=now)
        )
    for (device_id,) in conn.execute(sa.select(seals.c.device_id)).all():
        latest = conn.execute(
            sa.select(events.c.seq, events.c.type, events.c.ts, events.c.payload)
            .where(events.c.device_id == device_id, events.c.type.in_(_ARMED_TYPES))
            .order_by(events.c.seq.desc())
            .limit(1)
        ).first()
        if latest is None:
            continue
        if latest.type in ("armed", "disarmed"):
            armed: bool | None = latest.type == "armed"
        else:
            value = (latest.payload or {}).get("armed")
            armed = value if isinstance(value, bool) else None
        if armed is not None:
            conn.execute(
                seals.update()
                .where(seals.c.device_id == device_id)
                .values(armed=armed, armed_at=latest.ts, armed_seq=latest.seq)
            )


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("court", sa.String(length=128), nullable=False, server_default=""))
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE cases SET court = (SELECT name FROM courts WHERE courts.code = cases.court_code) "
            "WHERE court_code IS NOT NULL"
        )
    )
    with op.batch_alter_table("seals", schema=None) as batch_op:
        batch_op.drop_column("armed_seq")
        batch_op.drop_column("armed_at")
        batch_op.drop_column("armed")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.alter_column("court", server_default=None)
        batch_op.drop_constraint(batch_op.f("fk_cases_court_code_courts"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_cases_court_code"))
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("status")
        batch_op.drop_column("seizure_expires_on")
        batch_op.drop_column("sealed_property")
        batch_op.drop_column("judge_phone")
        batch_op.drop_column("court_code")
    op.drop_table("courts")
