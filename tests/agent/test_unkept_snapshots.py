"""A trigger's event names its pre-trigger snapshots before they are stored; a crash in between must not leave a signed
event naming pictures that no file, no queue entry and no signed event accounts for.

The crash is the test suite's usual one (:mod:`tests.agent.test_spool_crash`): a ``BaseException`` raised by the
recorder's ``on_committed`` right after the intrusion's commit, which nothing on the way catches, so the trigger's
follow-up (store, queue, ``snapshot_taken``) never runs — as after a power cut at that instant. The next start signs a
``snapshot_lost`` (``never_stored``) for each of those pictures, once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from seal_agent.runtime import SealRuntime
from seal_dev.broker import PrivateBroker
from seal_protocol import EventType, decode_envelope
from tests.agent.helpers import RuntimeFactory, pulse, wait_until, write_config
from tests.agent.test_camera_agent import camera_section, started
from tests.agent_camera.clips import moving_rectangle_frames, write_clip


class Crash(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


def events(runtime: SealRuntime) -> list[Any]:
    return [decode_envelope(e.data) for e in runtime.outbox.pending(limit=1000)]


def records(outbox_path: Path) -> list[str]:
    """The outbox's records of triggers whose snapshots are not yet stored (read as any SQLite client would)."""
    with sqlite3.connect(outbox_path) as db:
        return [key for (key,) in db.execute("SELECT key FROM meta WHERE key LIKE 'unkept_snapshots/%'")]


def crash_after_intrusion(runtime: SealRuntime) -> None:
    """Die right after the first ``intrusion`` is committed."""
    notify = runtime.recorder.on_committed

    def committed() -> None:
        last = runtime.outbox.pending(after=0, limit=1000)[-1]
        if decode_envelope(last.data).type is EventType.INTRUSION:
            runtime.recorder.on_committed = notify
            raise Crash("killed right after the intrusion's commit")
        notify()

    runtime.recorder.on_committed = committed


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_snapshots_named_by_an_intrusion_a_crash_kept_from_being_stored_are_signed_lost_at_the_next_start(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    config = write_config(tmp_path, broker, camera=camera_section(video))
    first = started(runtimes(config))
    crash_after_intrusion(first)
    pulse(mock_pins)
    assert wait_until(lambda: any(e.type is EventType.INTRUSION for e in events(first)), timeout=30)
    assert first.agent.wait_recorded(30, follow_ups=True)
    [intrusion] = [e for e in events(first) if e.type is EventType.INTRUSION]
    named = set(intrusion.payload["snapshots"])
    assert named, "the intrusion named no snapshot"
    assert first.spool is not None
    assert not named & set(first.spool.store.hashes()), "stored before the crash: nothing to test"
    assert not named & first.outbox.queued_snapshots()
    assert not [e for e in events(first) if e.type is EventType.SNAPSHOT_TAKEN]
    first.close()  # what the dead process left on disk: the intrusion, and not its snapshots

    second = runtimes(config)  # the next start
    lost = [e.payload for e in events(second) if e.type is EventType.SNAPSHOT_LOST]
    assert sorted(p["snapshot"] for p in lost) == sorted(named), lost
    assert {(p["reason"], p["kept"]) for p in lost} == {("never_stored", None)}
    assert records(second.outbox.path) == []
    second.close()

    third = runtimes(config)  # named once: a later start signs nothing again
    assert len([e for e in events(third) if e.type is EventType.SNAPSHOT_LOST]) == len(named)


def test_a_trigger_whose_snapshots_were_stored_leaves_no_record_and_no_loss(
    tmp_path: Path, broker: PrivateBroker, runtimes: RuntimeFactory, mock_pins: MockFactory
) -> None:
    video = write_clip(tmp_path / "walk.avi", moving_rectangle_frames(100))
    config = write_config(tmp_path, broker, camera=camera_section(video))
    first = started(runtimes(config))
    pulse(mock_pins)
    assert first.agent.wait_recorded(30, follow_ups=True)
    assert [e.type for e in events(first)].count(EventType.SNAPSHOT_TAKEN) == 1
    first.close()
    assert records(first.outbox.path) == []
    second = runtimes(config)
    assert not [e for e in events(second) if e.type is EventType.SNAPSHOT_LOST]
