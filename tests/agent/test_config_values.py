"""Values a seal's configuration must get right for the court to hear it: the case number (案号) as the court reads
it (one not of today's form is said, not refused), the broker's address alone, and how the problems are shown (a
Chinese and English lead line, then each key). Found by a hostile review of the seal's provisioning: a mistyped case
number or a broker given as ``host:8883`` passed ``check-config``; the seal then never reached the court."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import CONFIG_LEAD, NO_COURT_KEY, load_config, parse_config
from seal_agent.config_checks import case_no_warning
from seal_agent.errors import ConfigError
from seal_protocol.case_numbers import EXAMPLE, same_case_no
from tests.agent.helpers import SEAL_AGENT, agent_env
from tests.agent.test_config import VALID, write

CASE = "(2021)苏0214执1234号"


def seal_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SEAL_AGENT), *args], capture_output=True, text=True, env=agent_env(), check=False, timeout=60
    )


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


@pytest.mark.parametrize(
    "case_no",
    [
        "2021苏0214执1234号",  # no parentheses
        "(2021)苏0214执1234",  # no 号
        "(2021)苏0214民1234号",  # not an enforcement case
        "hello",
        "CHANGE",  # the example's placeholder word
    ],
)
def test_a_case_number_not_of_today_s_form_is_said_at_check_and_at_start_showing_the_form(
    case_no: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Said, not refused (a court keeps cases of older forms, whose seals must guard): a typo would have every event
    refused at the court as wrong_case."""
    path = write(tmp_path, VALID.replace(f'case_no = "{CASE}"', f'case_no = "{case_no}"'))
    config = load_config(path)
    assert config.case_no == case_no
    said = case_no_warning(config)
    assert said is not None and said.startswith(f"case_no: “{case_no}”不是现行格式的执行案号")
    assert said.index("不是现行格式") < said.index(f"{case_no!r} is not an enforcement case number")  # Chinese first
    assert said.count(EXAMPLE) == 2  # the expected form, in both languages
    main(["check-config", "--config", str(path)])
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    "case_no",
    [
        CASE,
        "（2021）苏0214执1234号",
        "〔2021〕苏0214执1234号",
        " (2021)苏0214执1234号",
        "(2024)最高法执恢12号",
        "(2015)锡执字第00123号",  # before 2016's form: the court keeps such cases (a null court_code)
        "(2021)苏0214执1234号之一",
    ],
)
def test_any_spelling_of_a_case_number_is_accepted_and_kept_as_written(case_no: str) -> None:
    """The wire carries the number as the seal wrote it; the court files it under any spelling of its case, and keeps
    cases whose numbers are of older forms: the seal starts with any of them."""
    config = parse_config(VALID.replace(f'case_no = "{CASE}"', f'case_no = "{case_no}"'))
    assert config.case_no == case_no
    if "最高法" not in case_no and "锡" not in case_no and "之一" not in case_no:
        assert same_case_no(config.case_no, CASE)


def test_the_real_command_says_a_mistyped_case_number(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace(f'case_no = "{CASE}"', 'case_no = "2021苏0214执1234号"'))
    result = seal_agent("check-config", "--config", str(path))
    assert "case_no: “2021苏0214执1234号”不是现行格式的执行案号" in result.stderr and EXAMPLE in result.stderr


TLS = 'tls_ca_file = "/etc/court-seal/ca.pem"'  # not read by parse_config: a remote broker needs TLS to parse


@pytest.mark.parametrize(
    "host",
    [
        "mqtt.court.example:8883",  # with its port
        "mqtt://mqtt.court.example",  # a URL
        "mqtts://10.0.0.5:8883",
        "a b",  # white space
        " mqtt.court.example",
        "mqtt.court.example/",
        "[fd00::1]:8883",
        "10.0.0",  # neither an address nor a name
        "-mqtt.court.example",
        "mqtt..court.example",
    ],
)
def test_a_broker_host_that_is_not_a_name_or_address_is_refused(host: str) -> None:
    text = VALID.replace('host = "127.0.0.1"', f'host = "{host}"').replace('tls_ca_file = ""', TLS)
    problems = [p for p in problems_of(text) if p.startswith("mqtt.host: ")]
    assert len(problems) == 1, problems_of(text)
    problem = problems[0]
    assert problem.startswith(f"mqtt.host: “{host}”不是主机名或 IP 地址")
    assert problem.index("不带 mqtt:// 等前缀、端口") < problem.index(f"{host!r} is not a host name or IP address")


@pytest.mark.parametrize(
    ("host", "kept"),
    [
        ("mqtt.court.example", "mqtt.court.example"),
        ("mqtt.court.example.", "mqtt.court.example."),
        ("10.0.0.5", "10.0.0.5"),
        ("fd00::1", "fd00::1"),
        ("[fd00::1]", "fd00::1"),  # an IPv6 literal as a URL writes it: the brackets are not part of the address
        ("broker", "broker"),
        ("法院.中国", "法院.中国"),  # an international name
        ("LOCALHOST", "LOCALHOST"),
    ],
)
def test_a_host_name_or_ip_address_is_accepted(host: str, kept: str) -> None:
    text = VALID.replace('host = "127.0.0.1"', f'host = "{host}"').replace('tls_ca_file = ""', TLS)
    assert parse_config(text).mqtt.host == kept


def test_problems_come_under_a_chinese_and_english_lead_line(tmp_path: Path) -> None:
    """pydantic's own words stay English (with the key they concern); the line above them says, Chinese first, that
    the seal's configuration is wrong, in every command that reads it (check-config, keygen, run)."""
    path = write(tmp_path, VALID.replace("pin = 17", "pin = 40"))
    for command in ("check-config", "keygen", "run"):
        result = seal_agent(command, "--config", str(path))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert lines[0] == CONFIG_LEAD == "封条配置有误，请按下列各项更正 / the seal's configuration is invalid:"
        assert lines[1] == "  pir.pin: Input should be less than or equal to 27"
    no_key = write(tmp_path, VALID.replace('server_public_key = "', 'server_public_key = "" # "'))
    result = seal_agent("check-config", "--config", str(no_key))
    problems = [line for line in result.stderr.splitlines() if " WARNING " not in line]  # the example's case_no
    assert result.returncode == 2 and problems == [CONFIG_LEAD, f"  {NO_COURT_KEY}"]
