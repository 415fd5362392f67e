"""PostgreSQL plans the court's statements for the rows a table holds when they run, not when they were first
prepared. psycopg prepares a statement on the server after its fifth execution, and PostgreSQL then keeps a generic
plan for it, whatever the parameters, if that looked no worse: for a statement first run while a table was empty
(a new court, the ingest's first batches) that plan is a sequential scan, kept while the table grows. The ingest's
look-up of stored event ids then read the whole events table at every batch (measured: 9.7 → 16.7 ms a batch of
20 events over the first 20,000 events). The engine sets ``plan_cache_mode = force_custom_plan``."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, text

PROBE = "SELECT id FROM plan_probe WHERE v = ANY(CAST(:vs AS VARCHAR[]))"


def test_a_statement_first_run_on_an_empty_table_uses_its_index_once_the_table_has_grown(
    engine: Engine, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's plan cache")
    with engine.connect() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE plan_probe (id SERIAL PRIMARY KEY, v VARCHAR(36) UNIQUE)"))
        for _ in range(20):  # prepared by psycopg (from the 6th), planned by PostgreSQL, while the table is empty
            conn.execute(text(PROBE), {"vs": [str(uuid.uuid4()) for _ in range(20)]}).all()  # as a batch's ids
        conn.execute(text("INSERT INTO plan_probe (v) SELECT md5(n::text) FROM generate_series(1, 20000) AS n"))
        conn.execute(text(PROBE), {"vs": [str(uuid.uuid4())]}).all()
        name, generic = conn.execute(
            text("SELECT name, generic_plans FROM pg_prepared_statements WHERE statement LIKE '%plan_probe WHERE%'")
        ).one()
        plan = "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN EXECUTE {name}('{{{uuid.uuid4()}}}')")))
        conn.rollback()
    assert generic == 0
    assert "Seq Scan" not in plan and "plan_probe_v_key" in plan, plan
