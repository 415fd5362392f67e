"""``check-config`` checks what the service will meet, not what root sees: the broker's CA as the agent loads it, the
modes of the seal's secrets, the systemd unit's sandbox, and the installation runs the check as the service's user.
Found by a hostile review of the seal's provisioning: a CA that was not PEM passed and the unit then restart-looped
on "[X509] PEM lib"; a 0600 root password, a state_dir outside the sandbox passed a check run as root."""

from __future__ import annotations

import configparser
import os
import re
import tomllib
from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import parse_config
from seal_agent.config_checks import (
    EXAMPLE_VALUES,
    SERVICE_USER,
    UNIT_CONFIG,
    UNIT_HIDDEN,
    UNIT_WORKING_DIRECTORY,
    UNIT_WRITABLE,
    check_files,
    root_warning,
    secret_warnings,
    unit_warnings,
)
from tests.agent.test_config import VALID, write
from tests.agent.tls_files import write_ca

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "hardware" / "seal-agent.service"
INSTALL = REPO / "hardware" / "install.sh"
README = REPO / "README.md"


def with_ca(tmp_path: Path, ca: Path) -> Path:
    return write(tmp_path, VALID.replace('tls_ca_file = ""', f'tls_ca_file = "{ca}"'))


@pytest.mark.parametrize(
    "content",
    [
        b"-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n",  # the review's file
        b"",
        b"the court's CA, see the e-mail\n",
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB==\n-----END PRIVATE KEY-----\n",
    ],
)
def test_a_ca_file_the_tls_layer_cannot_load_fails_check_config_and_start(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(content)
    path = with_ca(tmp_path, ca)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"mqtt.tls_ca_file: {ca} 不是可用的 PEM 格式 CA 证书" in err and "holds no CA certificate" in err
    assert main(["run", "--config", str(path)]) == 2  # refused before the seal starts, saying why
    assert "mqtt.tls_ca_file: " in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_a_der_ca_is_refused_and_the_same_in_pem_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    der = write_ca(tmp_path / "ca.der", der=True)
    assert main(["check-config", "--config", str(with_ca(tmp_path, der))]) == 2
    assert "不是可用的 PEM 格式 CA 证书" in capsys.readouterr().err
    pem = write_ca(tmp_path / "ca.pem")
    assert check_files(parse_config(with_ca(tmp_path, pem).read_text("utf-8"))) == []
    assert main(["check-config", "--config", str(with_ca(tmp_path, pem))]) == 0
    assert capsys.readouterr().out == "OK\n"


def config_with_secrets(tmp_path: Path, key_mode: int, password_mode: int) -> Path:
    path = write(tmp_path, VALID)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "device.key").write_text("a key\n")
    (tmp_path / "state" / "device.key").chmod(key_mode)
    (tmp_path / "pw").chmod(password_mode)
    return path


@pytest.mark.parametrize(
    ("key_mode", "password_mode", "warned"),
    [
        (0o600, 0o600, []),
        (0o600, 0o640, []),  # as install.sh leaves it: root:seal 0640, for the service's group
        (0o644, 0o644, ["state_dir", "mqtt.password_file"]),
        (0o640, 0o640, ["state_dir"]),  # the key signs the seal's evidence: its group may not read it either
        (0o400, 0o604, ["mqtt.password_file"]),
    ],
)
def test_secrets_other_accounts_can_read_are_warned_of(
    key_mode: int, password_mode: int, warned: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config_with_secrets(tmp_path, key_mode, password_mode)
    warnings = secret_warnings(parse_config(path.read_text("utf-8")))
    assert [warning.split(":")[0] for warning in warnings] == warned
    assert main(["check-config", "--config", str(path)]) == 0  # a warning: the seal keeps guarding
    err = capsys.readouterr().err
    for warning in warnings:
        assert f"WARNING seal_agent.cli: {warning}" in err
    if "state_dir" in warned:
        key = tmp_path / "state" / "device.key"
        assert f"设备私钥 {key} 可被其他账号读取（权限 {key_mode:04o}）" in err and f"chmod 600 {key}" in err


def test_the_sandbox_constants_are_the_unit_s() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT, encoding="utf-8")
    service = unit["Service"]
    assert service["User"] == SERVICE_USER
    assert service["ExecStart"].endswith(f" run --config {UNIT_CONFIG}")
    assert Path(service["WorkingDirectory"]) == UNIT_WORKING_DIRECTORY
    assert [Path(p) for p in service["ReadWritePaths"].split()] == [UNIT_WRITABLE]
    assert Path("/var/lib") / service["StateDirectory"] == UNIT_WRITABLE
    assert (service["ProtectSystem"], service["ProtectHome"], service["PrivateTmp"]) == ("strict", "yes", "yes")
    assert {Path("/home"), Path("/root"), Path("/run/user"), Path("/tmp"), Path("/var/tmp")} == set(UNIT_HIDDEN)


INSTALLED = (REPO / "hardware" / "agent.example.toml").read_text("utf-8")


def installed(**replacements: str) -> list[str]:
    text = INSTALLED
    for old, new in replacements.items():
        assert f'"{old}"' in text, old
        text = text.replace(f'"{old}"', f'"{new}"')
    return [warning.split(":")[0] for warning in unit_warnings(parse_config(text))]


def test_what_the_unit_s_sandbox_keeps_from_the_service_is_warned_of() -> None:
    assert installed() == []  # the example: /etc/court-seal, /var/lib/court-seal, /opt/court-seal/sounds
    assert installed(**{"/var/lib/court-seal": "/srv/seal"}) == ["state_dir"]  # read-only for the service
    assert installed(**{"/var/lib/court-seal": "/var/lib/court-seal/seal-1"}) == []
    assert installed(**{"/var/lib/court-seal": "/home/pi/seal"}) == ["state_dir"]  # hidden
    assert installed(**{"/var/lib/court-seal": "/tmp/seal"}) == ["state_dir"]  # the unit's own, empty /tmp
    assert installed(**{"/etc/court-seal/mqtt-password": "/home/pi/mqtt-password"}) == ["mqtt.password_file"]
    assert installed(**{"/etc/court-seal/ca.pem": "/root/ca.pem"}) == ["mqtt.tls_ca_file"]
    assert installed(**{"/opt/court-seal/sounds": "/home/pi/court-seal/sounds"}) == ["warning.sounds_dir"]
    assert installed(**{"0": "/home/pi/clip.avi"}) == ["camera.source"]
    # A relative path: the unit resolves it from its working directory, /var/lib/court-seal.
    assert installed(**{"/var/lib/court-seal": "."}) == ["state_dir"]
    assert installed(**{"/etc/court-seal/mqtt-password": "mqtt-password"}) == ["mqtt.password_file"]
    warning = unit_warnings(parse_config(INSTALLED.replace('"/var/lib/court-seal"', '"/srv/seal"')))[0]
    assert warning.index("只能写该目录") < warning.index("the only directory the seal-agent unit may write")


def test_a_symbolic_link_into_a_hidden_tree_is_warned_of(tmp_path: Path) -> None:
    link = tmp_path / "ca.pem"
    link.symlink_to("/home/pi/ca.pem")
    text = INSTALLED.replace('"/etc/court-seal/ca.pem"', f'"{link}"')
    assert [w.split(":")[0] for w in unit_warnings(parse_config(text))] == ["mqtt.tls_ca_file"]


@pytest.mark.skipif(os.geteuid() != 0, reason="root_warning speaks only to root")
def test_check_config_as_root_says_to_run_it_as_the_service_s_user() -> None:
    warning = root_warning("nobody")
    assert warning is not None and "sudo -u nobody" in warning
    assert root_warning("no-such-user-here") is None  # a development machine: no service user, nothing to say


def check_config_lines(text: str) -> list[str]:
    return [
        line for line in text.splitlines() if "seal-agent check-config" in line or 'seal-agent" check-config' in line
    ]


def test_the_installation_checks_the_configuration_as_the_service_s_user() -> None:
    """Root reads a 0600 root file and writes any directory: its check says nothing of the seal user's."""
    script = check_config_lines(INSTALL.read_text("utf-8"))
    assert len(script) == 2, script  # the step it prints and the check that decides to start the unit
    assert all(re.search(r"(runuser -u seal --|sudo -u seal) \S*seal-agent\"? check-config", line) for line in script)
    readme = README.read_text("utf-8")
    section = readme[readme.index("## Install a seal on a Raspberry Pi") : readme.index("## Run a court server")]
    steps = [line for line in check_config_lines(section) if line.startswith("sudo")]
    assert steps == [
        "sudo -u seal /opt/court-seal/.venv/bin/seal-agent check-config --config /etc/court-seal/agent.toml"
    ]


def test_the_example_s_values_are_the_example_file_s() -> None:
    example = tomllib.loads(INSTALLED)
    assert {key: example[key] for key in EXAMPLE_VALUES} == EXAMPLE_VALUES
    for key in EXAMPLE_VALUES:
        assert re.search(rf"^{key} = .*# CHANGE", INSTALLED, re.M), key


def test_check_config_warns_of_the_example_s_device_id_and_case_no(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both are marked ``# CHANGE`` in the example; left as they are, the seal would speak for another seal or in
    another case than the court registered. Found by the review: check-config said OK, nothing more."""
    text = VALID.replace('device_id = "seal-demo-1"', 'device_id = "seal-0001"').replace(
        'username = "seal-demo-1"', 'username = "seal-0001"'
    )
    path = write(tmp_path, text)
    assert main(["check-config", "--config", str(path)]) == 0  # a warning: the values are valid
    out, err = capsys.readouterr()
    assert out == "OK\n"
    assert "device_id: “seal-0001”是示例配置 agent.example.toml 中的值（标有 # CHANGE）" in err
    assert "device_id: 'seal-0001' is the example configuration's value (marked # CHANGE)" in err
    assert "case_no: '(2021)苏0214执1234号' is the example configuration's value (marked # CHANGE)" in err
    other = VALID.replace("(2021)苏0214执1234号", "(2024)苏0214执567号")
    assert main(["check-config", "--config", str(write(tmp_path, other))]) == 0
    assert "example configuration's value" not in capsys.readouterr().err


def test_check_config_warns_of_a_broker_host_that_never_resolves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example's ``host = "mqtt.court.example"`` (marked ``# CHANGE``) passed check-config with OK: the seal then
    never reached a broker (found by the README review)."""
    example_host = tomllib.loads(INSTALLED)["mqtt"]["host"]
    with_tls = VALID.replace('tls_ca_file = ""', f'tls_ca_file = "{write_ca(tmp_path / "ca.pem")}"')
    for host in (example_host, "broker.court.invalid", "MQTT.Court.Example."):
        text = re.sub(r'^host = ".*"', f'host = "{host}"', with_tls, count=1, flags=re.M)
        assert f'host = "{host}"' in text
        assert main(["check-config", "--config", str(write(tmp_path, text))]) == 0  # valid: a warning
        out, err = capsys.readouterr()
        assert out == "OK\n"
        assert f"mqtt.host: {host!r} is in a reserved domain" in err, err
        assert "保留域名" in err
    assert main(["check-config", "--config", str(write(tmp_path, VALID))]) == 0
    assert "reserved domain" not in capsys.readouterr().err


def test_the_readme_s_seal_is_not_the_example_file_s() -> None:
    """A court that follows the README registers its seal and case; a seal configured with those values must not
    be told at every check-config and start that they are the example file's (the review found the README's
    `seal add seal-0001 --case '(2021)苏0214执1234号'` were exactly the values marked # CHANGE)."""
    readme = README.read_text("utf-8")
    section = readme[readme.index("\n## Run a court server\n") :]
    seal_add = re.search(r"seal-server seal add (\S+) --case '([^']+)'", section)
    assert seal_add, "the README no longer registers a seal with `seal add DEVICE_ID --case '…'`"
    device_id, case_no = seal_add.groups()
    assert device_id != EXAMPLE_VALUES["device_id"] and case_no != EXAMPLE_VALUES["case_no"]
    assert f"case add '{case_no}'" in section  # the case it binds the seal to is the one the README adds


def test_the_unit_does_not_wait_for_the_network() -> None:
    """The seal guards without a network (its events wait in the outbox, the broker is retried): after a power cut
    with the Wi-Fi gone, waiting for network-online.target held its start a minute or more."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT, encoding="utf-8")
    section = unit["Unit"]
    assert "network-online.target" not in " ".join(section.get(key, "") for key in ("After", "Wants", "Requires"))
    assert "sound.target" in section["After"].split()
