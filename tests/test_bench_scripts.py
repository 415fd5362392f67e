"""Every bench script runs to its end at a small size and prints its figures (docs/benchmarks.md quotes them).

The figures themselves are not asserted (speed is measured by the scripts, in one run, as ratios): what is asserted is
that each script still works on the code as it is — a script that no longer runs is a figure that can no longer be
checked — and says what the docs say it says. In the full run only (``pytest --long``, ``SEAL_LONG_TESTS=1``):
together they take a few minutes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import full_run

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("SEAL_TEST_DATABASE_URL")

#: script and arguments -> what its output must contain
RUNS = {
    "ingest_batch-sqlite": (
        ["ingest_batch.py", "--batches", "5", "--warm-up", "2", "--events", "4", "--seals", "2", "--statements"],
        ["sqlite: 5 batches of 4 events of 2 seals", "statements per batch", "INSERT INTO events"],
    ),
    "ingest-sqlite": (
        ["ingest.py", "--seals", "5", "--events", "10", "--rate-events", "20", "--rate", "200", "--baseline-runs", "1"],
        ["ratio to the bare subscriber", "publish -> committed at", "publish -> receipt at", "0 lost, 0 duplicated"],
    ),
    "snapshot_check": (
        ["snapshot_check.py", "--runs", "1"],
        ["camera 640x480", "40 MP baseline, 7 MiB", "12 MP progressive (refused)"],
    ),
    "fleet": (
        ["fleet.py", "--seals", "20", "--storm-seals", "10", "--storm-events", "5"],
        ["0 lost"],
    ),
    "evidence": (
        ["evidence.py", "--events", "200", "--snapshots", "20", "--seals", "2"],
        ["verify (python -m seal_verify)", "exit 0"],
    ),
    "agent_latency": (
        ["agent_latency.py", "--triggers", "10", "--skip-idle"],
        ["edge"],
    ),
    "dashboard_latency": (
        ["dashboard_latency.py", "--triggers", "5"],
        ["PIR edge"],
    ),
}
if PG_URL:
    RUNS["ingest_batch-postgresql"] = (
        ["ingest_batch.py", "--database-url", PG_URL, "--batches", "5", "--warm-up", "2", "--round-trips"],
        ["postgresql+psycopg: 5 batches", "round trip"],
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_bench_script_runs_and_prints_its_figures(request: pytest.FixtureRequest, name: str) -> None:
    if not full_run(request.config):
        pytest.skip("the bench scripts' runs are in the full run only (pytest --long, SEAL_LONG_TESTS=1)")
    arguments, said = RUNS[name]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / arguments[0]), *arguments[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for words in said:
        assert words in done.stdout, (words, done.stdout[-3000:])
