"""GPIO pins a Raspberry Pi gives to something else, configured as the PIR's or the lid switch's.

Warned of by ``check-config`` and at every start, not refused: a seal wired that way may still work (a board
without the overlay, a console switched off), and a seal that does not start guards nothing. But each of these is a
known way to get a seal that lies: the I²C pins (GPIO2, GPIO3) carry the board's own 1.8 kΩ pull-ups to 3.3 V, so a
PIR whose wire is cut reads "someone there" and its line never idles low; GPIO0/GPIO1 are the HAT identification
EEPROM's; GPIO14/GPIO15 are the serial console's when it is enabled; and the pins of an I²S amplifier's overlay
(GPIO18–21: the MAX98357A of hardware/PINOUT.md) belong to the sound driver, which then fails or fights the input.
"""

from __future__ import annotations

import re
from pathlib import Path

from seal_agent.config import AgentConfig

#: Raspberry Pi OS bookworm's boot configuration (older releases: /boot/config.txt).
BOOT_CONFIGS = (Path("/boot/firmware/config.txt"), Path("/boot/config.txt"))

_RESERVED = {
    0: ("HAT 识别 EEPROM（ID_SD）", "the HAT identification EEPROM's (ID_SD)"),
    1: ("HAT 识别 EEPROM（ID_SC）", "the HAT identification EEPROM's (ID_SC)"),
    2: (
        "I²C（SDA，板载 1.8 kΩ 上拉：断线即读作有人）",
        "I²C SDA, with the board's 1.8 kΩ pull-up (a cut wire reads as high)",
    ),
    3: (
        "I²C（SCL，板载 1.8 kΩ 上拉：断线即读作有人）",
        "I²C SCL, with the board's 1.8 kΩ pull-up (a cut wire reads as high)",
    ),
    14: ("串口控制台（TXD）", "the serial console's TXD when it is enabled"),
    15: ("串口控制台（RXD）", "the serial console's RXD when it is enabled"),
}
_I2S_PINS = frozenset({18, 19, 20, 21})
#: A line giving GPIO18–21 to an I²S sound device (dtparam=i2s=on, max98357a, hifiberry-*, googlevoicehat…).
_I2S_LINE = re.compile(
    r"^\s*(dtparam\s*=\s*i2s\s*=\s*on|dtoverlay\s*=\s*\S*(i2s|max98357|hifiberry|voicehat|iqaudio))", re.I | re.M
)


def pin_warnings(config: AgentConfig, boot_configs: tuple[Path, ...] = BOOT_CONFIGS) -> list[str]:
    """A warning (Chinese, then English) for each configured input pin the Pi gives to something else."""
    pins = [("pir.pin", config.pir.pin)]
    if config.tamper.enabled:
        pins.append(("tamper.pin", config.tamper.pin))
    i2s = next((path for path in boot_configs if _i2s_enabled(path)), None)
    warnings = []
    for name, pin in pins:
        if pin in _RESERVED:
            zh, en = _RESERVED[pin]
            warnings.append(f"{name}: GPIO{pin} 是{zh}的引脚，请改用其他 GPIO / GPIO{pin} is {en}: use another GPIO")
        elif pin in _I2S_PINS and i2s is not None:
            warnings.append(
                f"{name}: GPIO{pin} 已由 {i2s} 中的 I²S 声卡占用，请改用其他 GPIO / GPIO{pin} belongs to the I²S "
                f"sound device that {i2s} enables (GPIO18–21): use another GPIO"
            )
    return warnings


def _i2s_enabled(path: Path) -> bool:
    try:
        return _I2S_LINE.search(path.read_text(encoding="utf-8", errors="replace")) is not None
    except OSError:
        return False
