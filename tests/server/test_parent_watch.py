"""Each of :mod:`server.core.parent_watch`'s two ways, alone, stops a child process whose parent is killed with
SIGKILL (which lets the parent send nothing): Linux's parent-death signal, and the pipe from the parent. Real
processes: a parent that starts a child as ``seal-server ingest --workers N`` does (multiprocessing's spawn)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from server.core import parent_watch
from server.core.stop_signals import StopFlag, wait_for_stop
from tests.agent.helpers import wait_until
from tests.server.ingest_processes import REPO, WAIT_S, end_group

PARENT = (
    "import multiprocessing, sys; from tests.server.test_parent_watch import child; "
    "p = multiprocessing.get_context('spawn').Process(target=child, args=sys.argv[1:]); p.start(); p.join()"
)


def child(way: str, marker: str) -> None:
    """The child: it watches its parent the one ``way``, says so in ``marker``, then says when it stops."""
    stop = StopFlag()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    parent = parent_watch.multiprocessing.parent_process()
    assert parent is not None
    if way == "signal":
        parent_watch._death_signal(signal.SIGTERM)
    else:
        parent_watch.threading.Thread(target=parent_watch._watch, args=(parent.sentinel, stop), daemon=True).start()
    Path(marker).write_text("watching")
    wait_for_stop(stop)
    Path(marker).write_text("stopped")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("way", ["signal", "pipe"])
def test_either_way_alone_stops_a_child_whose_parent_was_killed(way: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, way, str(marker)],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        start_new_session=True,
    )
    try:
        assert wait_until(lambda: marker.exists() and marker.read_text() == "watching", WAIT_S)
        parent.kill()
        parent.wait(WAIT_S)
        assert wait_until(lambda: marker.read_text() == "stopped", WAIT_S)
    finally:
        end_group(parent)
