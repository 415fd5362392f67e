"""A value of the wrong TOML type in the court's settings is refused, naming its key, never converted. Found by a
hostile review: pydantic's lax mode took ``[http] port = true`` as port 1, ``cookie_secure = "no"`` as false,
``batch_linger_ms = "5"`` as 5 and ``trusted_proxies = [5]`` as 0.0.0.5/32, and ``check-config`` said ok."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.cli import main
from server.config import load_settings


@pytest.fixture(scope="module")
def court(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A court directory as ``seal-server init`` writes it (its server.toml sets every key)."""
    court = tmp_path_factory.mktemp("strict") / "court"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DATABASE_URL", raising=False)
        assert main(["init", str(court)]) == 0
    return court


def changed(court: Path, name: str, old: str, new: str) -> Path:
    """A copy of init's server.toml beside it, with the line ``old`` (whole, once) made ``new``."""
    lines = (court / "server.toml").read_text("utf-8").splitlines(keepends=True)
    assert lines.count(f"{old}\n") == 1, old
    path = court / f"{name}.toml"
    path.write_text("".join(new + "\n" if line == f"{old}\n" else line for line in lines), "utf-8")
    return path


def section_line(court: Path, section: str, key: str) -> str:
    """The line of ``key`` in ``[section]`` of init's file."""
    text = (court / "server.toml").read_text("utf-8")
    body = text.split(f"\n[{section}]\n", 1)[1].split("\n[", 1)[0]
    [line] = [line for line in body.splitlines() if line.startswith(f"{key} = ")]
    return line


@pytest.mark.parametrize(
    ("section", "key", "value", "said"),
    [
        (
            "http",
            "port",
            "true",
            "http.port: 应为整数，文件中写的是布尔值 true / expected an integer, the file has the",
        ),
        ("mqtt", "batch_linger_ms", '"5"', 'mqtt.batch_linger_ms: 应为数字，文件中写的是文字 "5"'),
        ("auth", "cookie_secure", '"no"', 'auth.cookie_secure: 应为 true 或 false，文件中写的是文字 "no"'),
        ("storage", "verify_tls", "1", "storage.verify_tls: 应为 true 或 false，文件中写的是整数 1"),
        ("http", "trusted_proxies", "[5]", "http.trusted_proxies.0: 应为加引号的文字，文件中写的是整数 5"),
        ("alarms", "offline_grace_s", "true", "alarms.offline_grace_s: 应为数字，文件中写的是布尔值 true"),
        ("mqtt", "port", '"1883"', 'mqtt.port: 应为整数，文件中写的是文字 "1883"'),
        ("mqtt", "allow_plaintext", '"false"', 'mqtt.allow_plaintext: 应为 true 或 false，文件中写的是文字 "false"'),
    ],
)
def test_check_config_refuses_a_value_of_another_toml_type_naming_its_key(
    court: Path, section: str, key: str, value: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = changed(court, f"{section}-{key}", section_line(court, section, key), f"{key} = {value}")
    capsys.readouterr()
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert "配置有误，请按下列各项更正 / invalid configuration:" in err  # the lead too
    assert err.index("应为") < err.index(" / expected ")  # Chinese first, then English
    assert "ok" not in capsys.readouterr().out


def test_a_whole_number_for_a_key_that_takes_fractions_and_the_environment_s_database_stay_accepted(
    court: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``offline_grace_s = 60`` is 60.0; ``DATABASE_URL`` (a string, as every environment variable) still replaces
    the file's database_url under the strict check."""
    path = changed(court, "whole", section_line(court, "alarms", "offline_grace_s"), "offline_grace_s = 60")
    url = f"sqlite:///{court / 'from-the-environment.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    capsys.readouterr()
    assert main(["check-config", "--config", str(path)]) == 0
    assert f"database {url}" in capsys.readouterr().out
    settings = load_settings(path)
    assert settings.alarms.offline_grace_s == 60.0 and settings.database_url == url
    assert settings.snapshot_dir == court / "snapshots" and isinstance(settings.snapshot_dir, Path)
