"""The debtor's path: removal requests (their proof files, the creditor's views, the disarm commands issued for
them, their history), each case's debtor access code, and every user's in-app inbox.

Revision ID: 8f2d6b4c1e37
Revises: 8e5f2a7c3b19
Create Date: 2026-12-04 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.base

revision: str = "8f2d6b4c1e37"
down_revision: str | None = "8e5f2a7c3b19"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_access_codes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_no", sa.String(length=64), nullable=False),
        sa.Column(
            "user_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            comment="The debtor account the code signs in.",
        ),
        sa.Column(
            "code_hash", sa.String(length=256), nullable=False, comment="argon2id of the code; never the code itself."
        ),
        sa.Column("issued_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "issued_by",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
            comment="Null when done on the CLI.",
        ),
        sa.ForeignKeyConstraint(["case_no"], ["cases.case_no"], name=op.f("fk_case_access_codes_case_no_cases")),
        sa.ForeignKeyConstraint(["issued_by"], ["users.id"], name=op.f("fk_case_access_codes_issued_by_users")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_case_access_codes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_access_codes")),
        sa.UniqueConstraint("case_no", name=op.f("uq_case_access_codes_case_no")),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "kind", sa.String(length=32), nullable=False, comment="What happened, e.g. removal.filed, removal.approved."
        ),
        sa.Column("case_no", sa.String(length=64), nullable=False),
        sa.Column("text_zh", sa.Text(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False, comment="What it is about, e.g. removal-request:12."),
        sa.Column("read_at", server.core.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["case_no"], ["cases.case_no"], name=op.f("fk_inbox_messages_case_no_cases")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_inbox_messages_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_messages")),
    )
    op.create_index(op.f("ix_inbox_messages_case_no"), "inbox_messages", ["case_no"], unique=False)
    op.create_index(op.f("ix_inbox_messages_user_id_id"), "inbox_messages", ["user_id", "id"], unique=False)

    op.create_table(
        "removal_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("case_no", sa.String(length=64), nullable=False),
        sa.Column(
            "open_case_no",
            sa.String(length=64),
            nullable=True,
            comment="The case number while the request is open, else null: one open per case.",
        ),
        sa.Column("state", sa.String(length=16), nullable=False, comment="server.removal.state.RemovalState"),
        sa.Column("ground", sa.String(length=32), nullable=False, comment="server.removal.grounds.RemovalGround"),
        sa.Column("statement", sa.Text(), nullable=False, comment="The debtor's statement."),
        sa.Column("filed_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("filed_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "views_due_at",
            server.core.base.UTCDateTime(timezone=True),
            nullable=False,
            comment="The creditor's written views are taken until then.",
        ),
        sa.Column("decided_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("decided_at", server.core.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decision_reasons", sa.Text(), nullable=True, comment="The judge's reasons (approval or rejection)."),
        sa.Column(
            "disarmed_at",
            server.core.base.UTCDateTime(timezone=True),
            nullable=True,
            comment="When the last seal's signed ack was settled.",
        ),
        sa.Column("lifted_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("lifted_at", server.core.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_no"], ["cases.case_no"], name=op.f("fk_removal_requests_case_no_cases")),
        sa.ForeignKeyConstraint(["decided_by"], ["users.id"], name=op.f("fk_removal_requests_decided_by_users")),
        sa.ForeignKeyConstraint(["filed_by"], ["users.id"], name=op.f("fk_removal_requests_filed_by_users")),
        sa.ForeignKeyConstraint(["lifted_by"], ["users.id"], name=op.f("fk_removal_requests_lifted_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_requests")),
        sa.UniqueConstraint("open_case_no", name=op.f("uq_removal_requests_open_case_no")),
    )
    op.create_index(op.f("ix_removal_requests_case_no"), "removal_requests", ["case_no"], unique=False)

    op.create_table(
        "removal_proofs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column(
            "media_type", sa.String(length=32), nullable=False, comment="application/pdf, image/jpeg or image/png."
        ),
        sa.Column(
            "filename", sa.String(length=255), nullable=False, comment="The name it was uploaded under (display only)."
        ),
        sa.Column("uploaded_at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["removal_requests.id"], name=op.f("fk_removal_proofs_request_id_removal_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_proofs")),
        sa.UniqueConstraint("request_id", "sha256", name=op.f("uq_removal_proofs_request_id_sha256")),
    )
    op.create_index(op.f("ix_removal_proofs_request_id"), "removal_proofs", ["request_id"], unique=False)

    op.create_table(
        "removal_steps",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "actor_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
            comment="Null: the server itself.",
        ),
        sa.Column("actor", sa.String(length=64), nullable=False, comment="The actor's username then, or '-'."),
        sa.Column(
            "action", sa.String(length=32), nullable=False, comment="file, or a server.removal.state.RemovalAction"
        ),
        sa.Column("from_state", sa.String(length=16), nullable=True, comment="Null for the filing itself."),
        sa.Column("to_state", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_removal_steps_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["request_id"], ["removal_requests.id"], name=op.f("fk_removal_steps_request_id_removal_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_steps")),
    )
    op.create_index(op.f("ix_removal_steps_request_id"), "removal_steps", ["request_id"], unique=False)

    op.create_table(
        "removal_views",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("author_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", server.core.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_removal_views_author_id_users")),
        sa.ForeignKeyConstraint(
            ["request_id"], ["removal_requests.id"], name=op.f("fk_removal_views_request_id_removal_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_views")),
    )
    op.create_index(op.f("ix_removal_views_request_id"), "removal_views", ["request_id"], unique=False)

    op.create_table(
        "removal_disarms",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("command_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["command_id"], ["commands.id"], name=op.f("fk_removal_disarms_command_id_commands")),
        sa.ForeignKeyConstraint(["device_id"], ["seals.device_id"], name=op.f("fk_removal_disarms_device_id_seals")),
        sa.ForeignKeyConstraint(
            ["request_id"], ["removal_requests.id"], name=op.f("fk_removal_disarms_request_id_removal_requests")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_removal_disarms")),
        sa.UniqueConstraint("command_id", name=op.f("uq_removal_disarms_command_id")),
    )
    op.create_index(op.f("ix_removal_disarms_request_id"), "removal_disarms", ["request_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_removal_disarms_request_id"), table_name="removal_disarms")

    op.drop_table("removal_disarms")
    op.drop_index(op.f("ix_removal_views_request_id"), table_name="removal_views")

    op.drop_table("removal_views")
    op.drop_index(op.f("ix_removal_steps_request_id"), table_name="removal_steps")

    op.drop_table("removal_steps")
    op.drop_index(op.f("ix_removal_proofs_request_id"), table_name="removal_proofs")

    op.drop_table("removal_proofs")
    op.drop_index(op.f("ix_removal_requests_case_no"), table_name="removal_requests")

    op.drop_table("removal_requests")
    op.drop_index(op.f("ix_inbox_messages_user_id_id"), table_name="inbox_messages")
    op.drop_index(op.f("ix_inbox_messages_case_no"), table_name="inbox_messages")

    op.drop_table("inbox_messages")
    op.drop_table("case_access_codes")
