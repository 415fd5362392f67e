"""Input pins a Raspberry Pi gives to something else are warned of by ``check-config`` (and at each start): the
I²C pins' board pull-ups make a cut PIR wire read as someone there, and an I²S overlay owns GPIO18–21 (an item of
the last note: such pins were accepted without a word)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import parse_config
from seal_agent.pin_checks import pin_warnings
from tests.agent.test_config import VALID, write


def _with_pins(pir: int) -> str:
    assert "[pir]\npin = 17\n" in VALID
    return VALID.replace("[pir]\npin = 17\n", f"[pir]\npin = {pir}\n", 1)


@pytest.mark.parametrize("pin", [0, 1, 2, 3, 14, 15])
def test_a_pin_the_board_gives_to_something_else_is_warned_of(pin: int, tmp_path: Path) -> None:
    config = parse_config(_with_pins(pin))
    (warning,) = pin_warnings(config, boot_configs=())
    assert warning.startswith(f"pir.pin: GPIO{pin} 是") and "use another GPIO" in warning


def test_the_i2s_pins_are_warned_of_only_where_an_i2s_sound_device_is_enabled(tmp_path: Path) -> None:
    boot = tmp_path / "config.txt"
    boot.write_text("[all]\n# dtoverlay=max98357a\ndtparam=audio=on\n")
    config = parse_config(_with_pins(18))
    assert pin_warnings(config, boot_configs=(boot,)) == []
    boot.write_text("[all]\ndtoverlay=max98357a\n")
    (warning,) = pin_warnings(config, boot_configs=(boot,))
    assert "GPIO18" in warning and "I²S" in warning and str(boot) in warning
    assert pin_warnings(parse_config(_with_pins(17)), boot_configs=(boot,)) == []  # the default pins are free


def test_check_config_says_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, _with_pins(2))
    main(["check-config", "--config", str(path)])
    assert "WARNING seal_agent.cli: pir.pin: GPIO2 是" in capsys.readouterr().err
