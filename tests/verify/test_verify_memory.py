"""seal-verify's memory grows little with a bundle's events: each check passes over events.jsonl decoding one line
at a time, keeps what it needs of each (a seal's chain links, leaf indices), and checks log/proofs.jsonl line by line
against its leaf, instead of holding every line's parsed envelope and every proof at once (some 7 KB an event);
and the JSON-lines files are read from the zip line by line as each check passes over them, not held whole."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from seal_dev.case_events import fill_case
from seal_verify import verify_bundle
from server.core.db import SessionFactory
from server.export.service import ExportConfig, export_case
from tests.verify.world import build_world

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
CASE = "(2026)苏0214执88号"


def _peak_of_verifying(bundle: Path, log_key: str) -> int:
    tracemalloc.start()
    try:
        verdict = verify_bundle(bundle, log_key=log_key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert verdict.ok and verdict.anchored, verdict
    return peak


@ON_SQLITE
def test_the_memory_of_verifying_a_bundle_grows_little_with_its_events(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    bundles = {}
    for events in (1000, 2000):
        case_no = CASE.replace("88", str(events))
        fill_case(session_factory, case_no, events, seals=4, prefix=f"seal-v{events}")
        with session_factory() as session:
            result = export_case(
                session,
                case_no=case_no,
                target=tmp_path / f"{events}.zip",
                log_key=world.log_key,
                config=ExportConfig.from_settings(world.settings),
                actor=None,
                exported_by="cli:test",
            )
        assert result.events == events and result.verified
        bundles[events] = result.path
    verifier = world.log_key.verifier()
    _peak_of_verifying(bundles[1000], verifier)  # the caches of a first run (fonts, statements), once per process
    small, large = (_peak_of_verifying(bundles[n], verifier) for n in (1000, 2000))
    grown = (large - small) / 1000
    # What is left is a few small values an event (a seal's chain links, leaf indices: some 600 B). The bytes of the
    # JSON-lines members (events.jsonl, events-meta.jsonl, log/proofs.jsonl: about 1.3 KB an event) were read whole
    # from the zip (some 1.9 KB an event in all); they are read line by line now. It was 6.8 KB before the checks
    # passed over the lines one at a time.
    assert grown < 1000, f"{grown:.0f} B/event"
