"""Each seal's delivery of a picture its own row, on every court: the ``snapshots`` table's unique rule becomes
(sha256, device_id, case_no) where it is still (sha256, case_no).

Migration 0014 was edited after it first landed: its first version created ``snapshot_names`` only; the edited one
also replaced that rule. A database stamped at 0014 by the first version never ran the new lines and kept the old
rule, under which the ingest quarantines (storage_error) a second seal's delivery of the same bytes to one case (two
covered lenses give the same black frame). The rule is found by its columns, not by its name; where the schema is
already right (0014 as it stands) nothing is done.

The downgrade does nothing: before this revision either rule may stand (it depends on which 0014 a court ran), and the
one left here is what 0014 as it stands makes and what every release from it expects. Putting (sha256, case_no)
back would bring the defect back, and would fail on the rows stored since (one picture from two seals in one case);
0014's downgrade restores the old rule on the way further back.

Revision ID: 926d92864fce
Revises: 3e7b9c1d5f20
Create Date: 2026-12-08 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "926d92864fce"
down_revision: str | None = "3e7b9c1d5f20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = ("sha256", "case_no")
NEW = ("sha256", "device_id", "case_no")
NEW_NAME = "uq_snapshots_sha256_device_id_case_no"  # as the naming convention names the model's rule


def upgrade() -> None:
    rules = sa.inspect(op.get_bind()).get_unique_constraints("snapshots")
    old = [rule.get("name") or "" for rule in rules if set(rule["column_names"]) == set(OLD)]
    has_new = any(set(rule["column_names"]) == set(NEW) for rule in rules)
    if not old:
        return
    if "" in old:  # 0003 named it, as every revision names its rules: one without a name is no migration's
        raise RuntimeError("snapshots: a unique rule on (sha256, case_no) without a name; drop it by hand")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        for name in old:
            batch_op.drop_constraint(name, type_="unique")
        if not has_new:
            batch_op.create_unique_constraint(batch_op.f(NEW_NAME), list(NEW))


def downgrade() -> None:
    """Nothing: see the module's docstring."""
