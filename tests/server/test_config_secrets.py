"""``check-config`` reads the secrets the configuration names, as the server will, and refuses one that is missing,
empty or unreadable with its key named; ``run`` refuses them in one line, not a traceback from the app's start; an
empty path is no file (``Path("")`` would be the current directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main

BASE = """\
database_url = "sqlite:///{dir}/court.db"
snapshot_dir = "{dir}/snapshots"
[mqtt]
password_file = "{password_file}"
"""


def _config(tmp_path: Path, password_file: str, extra: str = "") -> list[str]:
    path = tmp_path / "server.toml"
    path.write_text(BASE.format(dir=tmp_path, password_file=password_file) + extra, encoding="utf-8")
    return ["--config", str(path)]


@pytest.mark.parametrize("case", ["missing", "empty", "blank path", "a directory"])
def test_an_unusable_mqtt_password_file_is_refused_by_check_config_and_run(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    password_file = {"missing": str(tmp_path / "absent.pw"), "empty": str(empty), "blank path": "", "a directory": "."}
    config = _config(tmp_path, password_file[case])
    capsys.readouterr()
    assert main(["check-config", *config]) == 2
    err = capsys.readouterr().err
    assert "mqtt" in err and "password_file" in err and "ok" not in err
    if case == "blank path":
        assert "mqtt.password_file: must name a file" in err
    else:
        assert "[mqtt] password_file: " in err
    assert main(["run", *config]) == 2
    captured = capsys.readouterr()
    assert "password_file" in captured.err and "Traceback" not in captured.err + captured.out


def test_the_key_files_it_names_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    password = tmp_path / "server.pw"
    password.write_text("a-password\n")
    not_a_key = tmp_path / "not-a-key"
    not_a_key.write_text("not base64 at all!\n")
    for extra, key in (
        (f'[commands]\nsigning_key_file = "{tmp_path / "absent.key"}"\n', "[commands] signing_key_file: "),
        (f'[commands]\nsigning_key_file = "{not_a_key}"\n', "[commands] signing_key_file: "),
        (f'[notices]\nkey_file = "{tmp_path / "absent.key"}"\n', "[notices] key_file: "),
        (f'[evidence]\nlog_key_file = "{not_a_key}"\n', "[evidence] log_key_file: "),
        (f'[notify]\nwebhook_secret_file = "{tmp_path / "absent.secret"}"\n', "[notify] webhook_secret_file: "),
    ):
        assert main(["check-config", *_config(tmp_path, str(password), extra)]) == 2, extra
        assert key in capsys.readouterr().err
    # The log's key may be absent (the server creates it on first use); every other secret read: ok.
    extra = f'[evidence]\nlog_key_file = "{tmp_path / "log.key"}"\n'
    assert main(["check-config", *_config(tmp_path, str(password), extra)]) == 0
    assert ": ok (" in capsys.readouterr().out
