"""``seal-server run`` takes no ``--actor`` (the server's audit entries name the users who act through it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main


def test_run_refuses_actor_rather_than_ignoring_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --actor NAME`` was accepted and ignored (the server's entries name its users); now refused."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main(["run", "--config", "server.toml", "--actor", "chen"])
    assert refused.value.code == 2
    assert "--actor" in capsys.readouterr().err
