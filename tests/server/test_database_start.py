"""What a command waits for at its start, and what it does not: a PostgreSQL that does not answer yet (nothing
listening) is waited for; one that answered and refused the role, the database or the password is not — waiting
does not mend a typo in ``database_url``, and before, ``init-db``, ``run`` and ``ingest`` each waited two minutes
for it (found by a review). Against the PostgreSQL of ``$SEAL_TEST_DATABASE_URL``; skipped without it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from seal_dev.broker import free_port
from server.cli import main
from server.core.db import START_WAIT_S, passing_fault
from tests.server.conftest import PG_ENV

PG_URL = os.environ.get(PG_ENV)
needs_postgres = pytest.mark.skipif(not PG_URL, reason=f"set {PG_ENV} to the test PostgreSQL")


def refusal(url: str) -> OperationalError:
    engine = create_engine(url)
    try:
        with pytest.raises(OperationalError) as caught:
            engine.connect().close()
    finally:
        engine.dispose()
    return caught.value


def court(tmp_path: Path, database_url: str) -> Path:
    directory = tmp_path / "court"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DATABASE_URL", raising=False)
        assert main(["init", str(directory)]) == 0
    config = directory / "server.toml"
    lines = config.read_text("utf-8").splitlines()
    [at] = [i for i, line in enumerate(lines) if line.startswith("database_url = ")]
    lines[at] = f'database_url = "{database_url}"'
    config.write_text("\n".join(lines) + "\n", "utf-8")
    return config


@needs_postgres
def test_a_role_or_database_the_server_refuses_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PG_URL is not None
    url = make_url(PG_URL)
    no_role = url.set(username="no_such_role_at_start")
    no_database = url.set(database="no_such_database_at_start")
    assert passing_fault(refusal(no_role.render_as_string(hide_password=False))) is None
    assert passing_fault(refusal(no_database.render_as_string(hide_password=False))) is None
    nobody_listens = url.set(port=free_port())  # a server not started yet: waited for, as before
    assert passing_fault(refusal(nobody_listens.render_as_string(hide_password=False))) == "no connection"

    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = court(tmp_path, no_role.render_as_string(hide_password=False))
    capsys.readouterr()
    started = time.monotonic()
    assert main(["init-db", "--config", str(config)]) == 1
    assert time.monotonic() - started < START_WAIT_S / 4
    err = capsys.readouterr().err
    assert 'role "no_such_role_at_start" does not exist' in err and "not available yet" not in err, err
