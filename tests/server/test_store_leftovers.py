"""A crash while a picture (or a removal proof) is written leaves its temporary file in the store's directory —
``.<sha256>.jpg.<random>.tmp``, up to the largest picture allowed — that no record names and nothing counts: the
server removes such files at its start once they are old enough that no writer of another process sharing the
directory (an ingest worker) may still be writing them; it keeps the younger ones and anything else."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.core.db import SessionFactory
from server.core.files import LEFTOVER_AGE_S, STORE_TEMP_NAME
from tests.prometheus import samples
from tests.server.auth_helpers import make_settings

_REPO = Path(__file__).resolve().parents[2]  # (its `server`, first on the writer's path: the code under test)
#: A writer that dies (SIGKILL) as it would flush its picture to disk: what a kill -9 or a power cut mid-write leaves.
_CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from server.core.db import SessionFactory
from server.core.files import DirectoryObjects
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
DirectoryObjects(Path(sys.argv[1])).put_once(sys.argv[2], sys.stdin.buffer.read())
"""


def _crash_while_writing(directory: Path, data: bytes, suffix: str) -> Path:
    """The temporary file a writer killed mid-write leaves in ``directory`` (the real code's own, not a copy)."""
    name = hashlib.sha256(data).hexdigest() + suffix
    writer = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(directory), name], input=data, cwd=_REPO, check=False
    )
    assert writer.returncode == -signal.SIGKILL
    (left,) = (p for p in directory.iterdir() if p.name.startswith(f".{name}."))
    assert STORE_TEMP_NAME.fullmatch(left.name) and left.read_bytes() == data and not (directory / name).exists()
    return left


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_server_removes_old_temporary_files_of_its_stores_at_start(
    database_url: str, session_factory: SessionFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(database_url, tmp_path)
    snapshots, proofs = settings.snapshot_dir, settings.proof_dir
    old_picture = _crash_while_writing(snapshots, b"\xff\xd8 a picture " * 4000, ".jpg")
    old_proof = _crash_while_writing(proofs, b"%PDF-1.4 a proof", ".pdf")
    young = _crash_while_writing(snapshots, b"\xff\xd8 another picture", ".jpg")  # another process's write, maybe
    for left in (old_picture, old_proof):
        _age(left, LEFTOVER_AGE_S + 60)
    _age(young, LEFTOVER_AGE_S - 60)
    stored = snapshots / (hashlib.sha256(b"stored").hexdigest() + ".jpg")  # a picture, as old: never a leftover
    foreign = [stored, snapshots / ".notes.tmp", snapshots / "x.jpg.abcdefgh.tmp", proofs / ".kept-by-hand.tmp"]
    for path in foreign:
        path.write_bytes(b"stored")
        _age(path, LEFTOVER_AGE_S * 10)

    caplog.set_level(logging.INFO, logger="server.core.files")
    with TestClient(create_app(settings, with_ingest=False), client=("127.0.0.1", 50000)) as client:
        values = samples(client.get("/metrics").text)

    assert not old_picture.exists() and not old_proof.exists()
    assert young.exists() and all(path.exists() for path in foreign)
    size = len(b"\xff\xd8 a picture " * 4000)
    assert values['seal_store_leftovers_removed_total{store="snapshot"}'] == 1
    assert values['seal_store_leftover_bytes_removed_total{store="snapshot"}'] == size
    assert values['seal_store_leftovers_removed_total{store="removal proof"}'] == 1
    lines = [r.getMessage() for r in caplog.records if "interrupted writes" in r.getMessage()]
    assert f"{snapshots}: removed 1 temporary files of interrupted writes ({size} bytes); 1 younger" in lines[0]
    assert f"{proofs}: removed 1 " in lines[1] and len(lines) == 2
