"""Configuration: the documented schema parses; every problem names its key; check-config's exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import wave
from pathlib import Path

import pytest
from pydantic import BaseModel

from seal_agent.cli import main
from seal_agent.config import (
    CONFIG_LEAD,
    DEFAULT_SOUNDS_DIR,
    load_config,
    parse_config,
    plaintext_warning,
    read_password,
)
from seal_agent.config_checks import check_files
from seal_agent.errors import ConfigError, SealAgentError
from tests.agent.helpers import COURT_PUBLIC_KEY, SEAL_AGENT, agent_env
from tests.agent.tls_files import write_ca

VALID = f"""
device_id = "seal-demo-1"
case_no = "(2021)苏0214执1234号"
state_dir = "var/demo/seal-demo-1"
heartbeat_s = 60
[mqtt]
host = "127.0.0.1"
port = 1883
username = "seal-demo-1"
password_file = "var/demo/seal-demo-1/mqtt-password"
keepalive_s = 30
tls_ca_file = ""
[pir]
pin = 17
[warning]
languages = ["zh", "en"]
sounds_dir = ""
repeat_s = 10
max_repeats = 3
cooldown_s = 30
[commands]
server_public_key = "{COURT_PUBLIC_KEY}"
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert isinstance(info.value, SealAgentError) and isinstance(info.value, ValueError)
    return info.value.problems


def test_documented_example_parses_with_defaults_resolved() -> None:
    config = parse_config(VALID)
    assert config.device_id == "seal-demo-1"
    assert config.mqtt_username == "seal-demo-1"
    assert config.mqtt.tls_ca_file is None
    assert config.warning.sounds_path == DEFAULT_SOUNDS_DIR
    assert config.warning.sound_files() == [DEFAULT_SOUNDS_DIR / f"warning_{lang}.wav" for lang in ("zh", "en")]
    assert all(path.is_file() for path in config.warning.sound_files())
    assert config.key_path == Path("var/demo/seal-demo-1/device.key")


def test_username_defaults_to_device_id() -> None:
    config = parse_config(VALID.replace('username = "seal-demo-1"\n', ""))
    assert config.mqtt.username is None
    assert config.mqtt_username == "seal-demo-1"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("port = 1883", "port = 70000", "mqtt.port: Input should be less than or equal to 65535"),
        ("pin = 17", "pin = 40", "pir.pin: Input should be less than or equal to 27"),
        ('device_id = "seal-demo-1"', 'device_id = "Seal/1"', "device_id: String should match pattern"),
        ("keepalive_s = 30", "keepalive_s = 30\ncolour = 1", "mqtt.colour: Extra inputs are not permitted"),
        ('password_file = "var/demo/seal-demo-1/mqtt-password"\n', "", "mqtt.password_file: Field required"),
        ('["zh", "en"]', '["zh", "EN!"]', "warning.languages.1: String should match pattern"),
        ("max_repeats = 3", "max_repeats = -1", "warning.max_repeats: Input should be greater than or equal to 0"),
        ("heartbeat_s = 60", "heartbeat_s = 0", "heartbeat_s: Input should be greater than or equal to 1"),
    ],
)
def test_each_problem_names_its_key(old: str, new: str, expected: str) -> None:
    assert old in VALID
    problems = problems_of(VALID.replace(old, new))
    assert any(p.startswith(expected) for p in problems), problems


def test_several_problems_are_all_reported() -> None:
    problems = problems_of(VALID.replace("port = 1883", "port = 0").replace("pin = 17", 'pin = "x"'))
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["mqtt.port", "pir.pin"]


def test_invalid_toml_is_a_config_error() -> None:
    assert problems_of("device_id = ")[0].startswith("(toml): ")


def test_files_are_checked(tmp_path: Path) -> None:
    config = parse_config(
        VALID.replace("var/demo/seal-demo-1/mqtt-password", str(tmp_path / "missing"))
        .replace('languages = ["zh", "en"]', 'languages = ["zh", "fr"]')
        .replace('tls_ca_file = ""', f'tls_ca_file = "{tmp_path / "ca.pem"}"')
    )
    problems = check_files(config)
    assert [p.split(":")[0] for p in problems] == ["mqtt.password_file", "mqtt.tls_ca_file", "warning.languages.1"]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "pw").chmod(0o600)  # no warning that every account can read it
    path = tmp_path / "seal.toml"
    path.write_text(
        text.replace("var/demo/seal-demo-1/mqtt-password", str(tmp_path / "pw")).replace(
            "var/demo/seal-demo-1", str(tmp_path / "state")
        ),
        encoding="utf-8",
    )
    return path


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(write(tmp_path, VALID))]) == 0
    assert capsys.readouterr().out == "OK\n"


def test_check_config_usage_shows_config_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check-config"])
    assert exited.value.code == 2
    usage = capsys.readouterr().err.splitlines()[0]
    assert usage.endswith(" --config FILE [--simulate]") and "[--config FILE]" not in usage


def test_check_config_reports_keys_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID.replace("port = 1883", "port = 65536"))
    assert main(["check-config", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "OK" not in captured.out
    assert "mqtt.port: Input should be less than or equal to 65535" in captured.err


@pytest.mark.parametrize("text", ["", "\n", "  \nsecret\n"])
def test_check_config_refuses_a_password_file_whose_first_line_is_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = write(tmp_path, VALID)
    (tmp_path / "pw").write_text(text)
    assert main(["check-config", "--config", str(path)]) == 2
    assert "mqtt.password_file: " in capsys.readouterr().err


def test_the_password_is_the_first_line_stripped_as_the_server_reads_its_own(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    (tmp_path / "pw").write_text("  s3cret \nsecond line, e.g. a comment\n")
    assert read_password(config) == "s3cret"


def test_empty_paths_mean_unset(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))  # tls_ca_file = "" and sounds_dir = ""
    assert config.mqtt.tls_ca_file is None and config.warning.sounds_dir is None
    assert config.warning.sounds_path == DEFAULT_SOUNDS_DIR


def test_check_config_names_a_camera_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A video file that is not there is a problem; a camera device that is not there now is a warning, as the seal
    treats it (it starts without pictures and keeps looking): an unplugged USB camera does not fail the check."""
    index = next(n for n in range(100, 1000) if not Path(f"/dev/video{n}").exists())
    absent_file = tmp_path / "absent.avi"
    for source, problem in [
        (str(absent_file), f"camera.source: {absent_file} does not exist"),
        (str(tmp_path), f"camera.source: {tmp_path} is not a video file"),
    ]:
        path = write(tmp_path, VALID + f'[camera]\nsource = "{source}"\n')
        assert main(["check-config", "--config", str(path)]) == 2
        assert capsys.readouterr().err.endswith(f"{CONFIG_LEAD}\n  {problem}\n")
    for source, device in [(str(index), f"/dev/video{index} (camera {index})"), ("/dev/video-absent", None)]:
        path = write(tmp_path, VALID + f'[camera]\nsource = "{source}"\n')
        assert main(["check-config", "--config", str(path)]) == 0
        out, err = capsys.readouterr()
        assert out == "OK\n"
        assert f"camera.source: {device or source} does not exist: the seal warns and records without pictures" in err
        assert CONFIG_LEAD not in err
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"RIFF")
    for source in (str(clip), "/dev/null", ""):  # a file, an existing device path, no camera
        path = write(tmp_path, VALID + f'[camera]\nsource = "{source}"\n')
        assert main(["check-config", "--config", str(path)]) == 0
        out, err = capsys.readouterr()
        assert out == "OK\n" and "camera.source" not in err


def seal_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SEAL_AGENT), *args], capture_output=True, text=True, env=agent_env())


def test_check_config_console_script_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, VALID)
    ok = seal_agent("check-config", "--config", str(good))
    assert (ok.returncode, ok.stdout) == (0, "OK\n"), ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text(encoding="utf-8").replace("[pir]", "[pir]\nbogus = 1"), encoding="utf-8")
    res = seal_agent("check-config", "--config", str(bad))
    assert res.returncode == 2
    assert "pir.bogus: Extra inputs are not permitted" in res.stderr


def test_check_config_still_takes_the_file_as_its_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Units and scripts installed before ``--config`` call ``check-config FILE``: a hidden alias."""
    good, bad = write(tmp_path, VALID), tmp_path / "bad.toml"
    bad.write_text(good.read_text(encoding="utf-8").replace("port = 1883", "port = 0"), encoding="utf-8")
    assert main(["check-config", str(good)]) == 0
    assert main(["check-config", str(good), "--config", str(good)]) == 0
    assert capsys.readouterr().out == "OK\nOK\n"
    assert main(["check-config", str(bad)]) == 2
    assert "mqtt.port: " in capsys.readouterr().err
    for args in ([], [str(good), "--config", str(bad)]):
        with pytest.raises(SystemExit) as usage:
            main(["check-config", *args])
        assert usage.value.code == 2
    assert "--config" in capsys.readouterr().err
    help_text = seal_agent("check-config", "--help").stdout
    assert "--config FILE" in help_text and "[file]" not in help_text  # the positional form stays hidden
    assert "--log-level LEVEL" in help_text and "--log-format FORMAT" in help_text  # as seal-server spells them


def test_log_flags_before_or_after_the_command_in_any_case(tmp_path: Path) -> None:
    """Both programs spell them ``--log-level LEVEL`` and ``--log-format text|json``."""
    good = write(tmp_path, VALID)
    for args in (
        ["--log-level", "debug", "--log-format", "json", "check-config", "--config", str(good)],
        ["check-config", "--config", str(good), "--log-level", "DEBUG", "--log-format", "json"],
        ["--log-level", "error", "check-config", "--log-level", "Debug", "--log-format", "json", "--config", str(good)],
    ):
        result = seal_agent(*args)
        assert (result.returncode, result.stdout) == (0, "OK\n"), result.stderr
    keygen = seal_agent("keygen", "--config", str(good), "--log-level", "INFO", "--log-format", "json")
    assert keygen.returncode == 0, keygen.stderr
    logged = [json.loads(line) for line in keygen.stderr.splitlines()]  # every line is one JSON object
    assert {"level": "INFO", "logger": "seal_agent.cli"}.items() <= logged[-1].items()
    # The same keys and timestamp form as the server's lines: UTC, milliseconds, offset.
    assert set(logged[-1]) == {"ts", "level", "logger", "message"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", logged[-1]["ts"]), logged[-1]["ts"]
    quiet = seal_agent("--log-level", "warning", "keygen", "--config", str(good))
    assert (quiet.returncode, quiet.stderr) == (0, "")  # "existing device key" is INFO
    for wrong in (["--log-level", "verbose"], ["--log-format", "xml"]):
        result = seal_agent("check-config", "--config", str(good), *wrong)
        assert result.returncode == 2 and "invalid choice" in result.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


EXAMPLE = Path(__file__).resolve().parents[2] / "hardware" / "agent.example.toml"


def test_hardware_example_sets_every_key_with_the_pinout_defaults() -> None:
    import tomllib

    from seal_agent.config import AgentConfig

    data = tomllib.loads(EXAMPLE.read_text("utf-8"))
    config = load_config(EXAMPLE)
    for name, field in AgentConfig.model_fields.items():
        assert name in data, f"{name} missing from the example"
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            optional = {"username"}  # documented as a comment: it defaults to device_id
            assert set(section.model_fields) - optional <= set(data[name]), f"[{name}] lacks keys"
    assert (config.pir.pin, config.tamper.pin) == (17, 27)
    assert config.state_dir == Path("/var/lib/court-seal")
    assert config.mqtt.password_file == Path("/etc/court-seal/mqtt-password")
    assert config.warning.sounds_path == Path("/opt/court-seal/sounds")
    assert config.commands.server_public_key == "" and config.commands.verify_key() is None


def test_check_config_accepts_the_hardware_example_once_its_files_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As shipped, only what an installer provides is missing: the court's key, the password, the CA and the sounds.
    missing = [p.split(":")[0] for p in check_files(load_config(EXAMPLE))]
    assert missing == [
        "commands.server_public_key",
        "mqtt.password_file",
        "mqtt.tls_ca_file",
        "warning.languages.0",
        "warning.languages.1",
    ]
    (tmp_path / "mqtt-password").write_text("secret\n")
    write_ca(tmp_path / "ca.pem")
    (tmp_path / "camera.avi").write_bytes(b"RIFF")  # the camera: this machine may have no /dev/video0
    installed = tmp_path / "agent.toml"
    installed.write_text(
        EXAMPLE.read_text("utf-8")
        .replace('source = "0"', f'source = "{tmp_path / "camera.avi"}"')
        .replace("/etc/court-seal", str(tmp_path))
        .replace("/opt/court-seal/sounds", str(DEFAULT_SOUNDS_DIR))
        .replace("/var/lib/court-seal", str(tmp_path / "state"))
        .replace('server_public_key = ""', f'server_public_key = "{COURT_PUBLIC_KEY}"'),
        encoding="utf-8",
    )
    assert main(["check-config", "--config", str(installed)]) == 0
    assert capsys.readouterr().out == "OK\n"


def test_a_seal_without_the_court_key_does_not_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only the court's signed receipts empty the outbox: without its key a seal would keep everything forever."""
    path = write(tmp_path, VALID.replace(COURT_PUBLIC_KEY, ""))
    assert main(["check-config", "--config", str(path)]) == 2
    assert "commands.server_public_key: not set" in capsys.readouterr().err
    assert main(["run", "--config", str(path)]) == 2
    assert "commands.server_public_key: not set" in capsys.readouterr().err
    from seal_agent.runtime import SealRuntime

    with pytest.raises(ConfigError, match="server_public_key"):
        SealRuntime(load_config(path))
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_delivery_timeouts_default_to_a_minute_doubling_up_to_an_hour_and_must_be_ordered() -> None:
    config = parse_config(VALID)
    assert (config.delivery.receipt_timeout_s, config.delivery.receipt_timeout_max_s) == (60, 3600)
    problems = problems_of(VALID + "[delivery]\nreceipt_timeout_s = 120\nreceipt_timeout_max_s = 60\n")
    assert any(p.startswith("delivery: ") and "receipt_timeout_max_s" in p for p in problems), problems


def test_a_warning_sound_that_simpleaudio_cannot_play_is_a_config_problem(tmp_path: Path) -> None:
    """simpleaudio loads a three-channel WAV but refuses it at every play: ``check-config`` says so."""
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    (sounds / "warning_en.wav").write_bytes((DEFAULT_SOUNDS_DIR / "warning_en.wav").read_bytes())
    with wave.open(str(sounds / "warning_zh.wav"), "wb") as out:
        out.setnchannels(3)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(bytes(3 * 2 * 2205))
    config = parse_config(
        VALID.replace("var/demo/seal-demo-1/mqtt-password", str(DEFAULT_SOUNDS_DIR / "warning_en.wav")).replace(
            'sounds_dir = ""', f'sounds_dir = "{sounds}"'
        )
    )
    problems = [p for p in check_files(config) if p.startswith("warning.")]
    assert len(problems) == 1 and problems[0].startswith("warning.languages.0:"), problems
    assert "3 channels" in problems[0]


@pytest.mark.parametrize("host", ["mqtt.court.example", "10.0.0.5", "192.168.1.10", "fd00::1", "localhost.example"])
def test_plain_tcp_to_a_broker_elsewhere_is_refused(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seal's password and events in plain text on the court's network: refused at load, so both check-config and
    run stop, unless the file says ``allow_plaintext = true`` by name. Found by a hostile review (check-config said
    OK)."""
    path = write(tmp_path, VALID.replace('host = "127.0.0.1"', f'host = "{host}"'))
    assert main(["check-config", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "OK" not in captured.out
    assert f"mqtt: tls_ca_file is empty, so the seal would send its password and events in plain text to {host}" in (
        captured.err
    )
    assert main(["run", "--config", str(path)]) == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "::1", "localhost", "LOCALHOST"])
def test_plain_tcp_to_a_broker_on_this_machine_is_accepted_without_a_warning(host: str, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID.replace('host = "127.0.0.1"', f'host = "{host}"')))
    assert config.mqtt.tls_ca_file is None and plaintext_warning(config) is None


def test_allow_plaintext_lets_it_through_with_a_loud_warning(tmp_path: Path) -> None:
    text = VALID.replace('host = "127.0.0.1"', 'host = "10.0.0.5"').replace(
        'tls_ca_file = ""', 'tls_ca_file = ""\nallow_plaintext = true'
    )
    path = write(tmp_path, text)
    result = subprocess.run(
        [str(SEAL_AGENT), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        env=agent_env(),
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (0, "OK\n"), result.stderr
    assert "WARNING" in result.stderr and "PLAIN TCP to 10.0.0.5:1883" in result.stderr
    with_tls = load_config(write(tmp_path, text.replace('tls_ca_file = ""', f'tls_ca_file = "{tmp_path / "ca"}"')))
    assert plaintext_warning(with_tls) is None
