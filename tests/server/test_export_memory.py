"""An export's memory does not grow with its case (the events stream from the database into the bundle, the proofs
and the report's facts), and the server runs one export at a time: another is refused (503, Retry-After) on the
API, or waits (a command)."""

from __future__ import annotations

import threading
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from seal_dev.case_events import fill_case
from server.app import create_app
from server.auth.access import Role
from server.core.db import SessionFactory
from server.export.service import ExportConfig, ExportResult, export_case
from server.web.i18n import said_in_chinese
from tests.server.auth_helpers import add_user, bearer
from tests.server.helpers import CASE_A
from tests.verify.world import CourtWorld, build_world

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
BIG_CASE = "(2026)苏0214执77号"


@dataclass
class PhasePeaks:
    """A progress that notes, for each phase of an export, the peak of the memory traced while it ran."""

    peaks: dict[str, int] = field(default_factory=dict)
    _phase: str | None = None

    def phase(self, what: str) -> None:
        self.close()
        self._phase = what.split(" ")[0]
        tracemalloc.reset_peak()

    def files(self, what: str, done: int, total: int) -> None:
        pass

    def close(self) -> None:
        if self._phase is not None:
            self.peaks[self._phase] = max(self.peaks.get(self._phase, 0), tracemalloc.get_traced_memory()[1])


def _export(world: CourtWorld, case_no: str, target: Path, progress: object = None, **kw: object) -> ExportResult:
    with world.session_factory() as session:
        return export_case(
            session,
            case_no=case_no,
            target=target,
            log_key=world.log_key,
            config=ExportConfig.from_settings(world.settings),
            actor=None,
            exported_by="cli:test",
            progress=progress,  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )


def _peak_per_phase(world: CourtWorld, events: int, tmp_path: Path) -> dict[str, int]:
    case_no = BIG_CASE.replace("77", str(events))
    fill_case(world.session_factory, case_no, events, seals=4, prefix=f"seal-n{events}")
    progress = PhasePeaks()
    tracemalloc.start()
    try:
        result = _export(world, case_no, tmp_path / f"{events}.zip", progress)
        progress.close()
    finally:
        tracemalloc.stop()
    assert result.events == events and result.verified
    return progress.peaks


@ON_SQLITE
def test_the_memory_of_an_export_does_not_grow_with_the_case_s_events(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    _export(world, CASE_A, tmp_path / "warm.zip")  # the report's font and the statements' caches, once per process
    small, large = 500, 2000
    before, after = _peak_per_phase(world, small, tmp_path), _peak_per_phase(world, large, tmp_path)
    # seal-verify's check of the staged files holds its JSON-lines members' bytes (seal_verify.bundle): its own
    # memory, some 1.9 KB an event, is tests/verify/test_verify_memory.py's to bound.
    ours = [phase for phase in after if phase != "verifying"]
    assert {"staging", "rendering", "writing"} <= set(ours)
    grown = {phase: (after[phase] - before[phase]) / (large - small) for phase in ours}
    # What is kept of every event: its leaf (8 bytes), and of the few that name pictures or that the timeline
    # lists, a summary — not their bytes, parsed envelopes and proofs (some 6 KB an event, before).
    assert max(grown.values()) < 1000, {phase: f"{b:.0f} B/event" for phase, b in grown.items()}


def _blocked_export(world: CourtWorld, target: Path) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """An export of case A running in a thread, held at its first phase until ``go`` is set."""
    started, go = threading.Event(), threading.Event()

    class Held:
        def phase(self, what: str) -> None:
            started.set()
            go.wait(30)

        def files(self, what: str, done: int, total: int) -> None:
            pass

    thread = threading.Thread(target=_export, args=(world, CASE_A, target, Held()))
    thread.start()
    assert started.wait(30)
    return thread, go, started


@ON_SQLITE
def test_a_second_export_at_once_is_refused_with_503_and_retry_after_then_allowed(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    add_user(session_factory, "judge-a", Role.JUDGE, (CASE_A,))
    url = f"/api/cases/{quote(CASE_A, safe='')}/export.zip"
    with TestClient(create_app(world.settings, with_ingest=False)) as client:
        running, go, _ = _blocked_export(world, tmp_path / "first.zip")
        try:
            refused = client.get(url, headers=bearer(session_factory, "judge-a"))
        finally:
            go.set()
            running.join(30)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        detail = refused.json()["detail"]
        assert said_in_chinese(detail) and "正在导出" in detail and "already running" in detail
        assert (tmp_path / "first.zip").is_file()
        allowed = client.get(url, headers=bearer(session_factory, "judge-a"))
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["content-type"] == "application/zip"


@ON_SQLITE
def test_a_command_s_export_waits_for_the_running_one_and_says_so(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    world = build_world(session_factory, database_url, tmp_path)
    running, go, _ = _blocked_export(world, tmp_path / "first.zip")
    said: list[str] = []

    class Told:
        def phase(self, what: str) -> None:
            said.append(what)

        def files(self, what: str, done: int, total: int) -> None:
            pass

    second = threading.Thread(target=_export, args=(world, CASE_A, tmp_path / "second.zip", Told()))
    second.start()
    try:
        second.join(1.0)
        assert second.is_alive() and said == ["waiting for the export running now"]
    finally:
        go.set()
        running.join(30)
        second.join(60)
    assert (tmp_path / "first.zip").is_file() and (tmp_path / "second.zip").is_file()
    assert said[1].startswith("gathering")


@ON_SQLITE
def test_the_export_s_passes_over_the_events_hold_no_write_lock(
    session_factory: SessionFactory, database_url: str, tmp_path: Path
) -> None:
    """Each pass over the events reads in a transaction of its own that only reads (SQLite: BEGIN DEFERRED): while
    the bundle is staged, verified and rendered, the ingest can write."""
    world = build_world(session_factory, database_url, tmp_path)
    fill_case(session_factory, BIG_CASE, 600, seals=2)
    wrote: list[str] = []

    class Writer:
        def phase(self, what: str) -> None:
            if not what.startswith("gathering"):
                with session_factory() as other:  # BEGIN IMMEDIATE: the write lock, or "database is locked"
                    other.execute(text("SELECT 1"))
                    other.commit()
                wrote.append(what.split(" ")[0])

        def files(self, what: str, done: int, total: int) -> None:
            pass

    assert _export(world, BIG_CASE, tmp_path / "big.zip", Writer()).events == 600
    assert wrote == ["staging", "verifying", "reading", "rendering", "writing"]
