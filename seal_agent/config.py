"""The seal's configuration: a TOML file read into pydantic models that refuse unknown keys, and values of another
TOML type than their key's (strict: ``pin = true`` or ``enabled = "off"`` is refused, not converted; see
:mod:`seal_agent.config_types`).

Relative paths in the file are relative to the working directory of the agent: the systemd unit's is the state
directory (``WorkingDirectory=/var/lib/court-seal`` in hardware/seal-agent.service), a command typed in a shell its
current directory; write them absolute in an installed seal's file. Every problem is reported with the key it
concerns, e.g. ``mqtt.port: Input should be less than or equal to 65535``; :data:`CONFIG_LEAD` is the line shown
above them. What the running seal needs from the machine (its files, their modes, the unit's sandbox) is checked by
:mod:`seal_agent.config_checks`.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from seal_agent.config_types import ConfigPath, OptionalPath, wrong_type
from seal_agent.devices.camera.config import CameraConfig
from seal_agent.errors import ConfigError
from seal_protocol.errors import SignatureError
from seal_protocol.signing import VerifyKey, verify_key_from_b64
from seal_protocol.topics import DEVICE_ID_PATTERN

#: The ``sounds/`` directory next to the package (a source checkout or an editable install).
DEFAULT_SOUNDS_DIR = Path(__file__).resolve().parent.parent / "sounds"

Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: One label of a host name: letters, digits, ``-`` (not first or last) and ``_``, at most 63 characters.
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)
_HOST_EXAMPLES = "mqtt.court.example, 10.0.0.5, fd00::1"


def broker_host(value: str) -> str:
    """``value`` if it is a host name (international names too) or an IP address (an IPv6 literal with or without
    its brackets, returned without them); raise ``ValueError`` (Chinese, then English) for anything else, such as a
    URL (``mqtt://…``), a name with its port (``host:8883``) or white space."""
    bare = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    try:
        ascii_name = value.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.removesuffix(".").split(".")
    valid = all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()
    if ascii_name and valid and len(ascii_name) <= 253:
        return value
    raise ValueError(
        f"“{value}”不是主机名或 IP 地址：只写消息服务器（MQTT broker）的主机名或地址，"
        f"不带 mqtt:// 等前缀、端口（端口写在 port）或空格，例如 {_HOST_EXAMPLES}。 / "
        f"{value!r} is not a host name or IP address: write the broker's name or address alone, without a scheme "
        f"such as mqtt://, a port (that is [mqtt] port) or spaces, e.g. {_HOST_EXAMPLES}"
    )


class MqttConfig(_Section):
    host: str = Field(
        min_length=1,
        max_length=255,
        description="Broker host name or IP address (no scheme, no port: that is `port`); with TLS, a name in the "
        "broker's certificate.",
    )
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is usual with TLS).")
    username: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="MQTT username; defaults to device_id, which the broker ACL expects.",
    )
    password_file: ConfigPath = Field(
        description="File holding the MQTT password (its first line). Anonymous MQTT is refused."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval in seconds.")
    reconnect_max_s: float = Field(
        5,
        ge=1,
        le=300,
        description="Ceiling of the reconnect back-off in seconds: attempts start 1 s apart, the gap grows with each "
        "failure up to this, with random jitter; a broker that is back is reached again within this long.",
    )
    tls_ca_file: OptionalPath = Field(
        None,
        description="CA certificate (PEM) of the broker; when set, the connection uses TLS. Empty: plain TCP, "
        "refused for a broker that is not on this machine (127.0.0.1, ::1, localhost) unless allow_plaintext.",
    )
    allow_plaintext: bool = Field(
        False,
        description="Let the seal talk plain TCP to a broker elsewhere (its password and every event readable and "
        "alterable on the way; a warning at every start). Only for a test bench, never for a sealed site.",
    )

    @field_validator("host")
    @classmethod
    def _host_only(cls, value: str) -> str:
        return broker_host(value)

    @model_validator(mode="after")
    def _tls_unless_local(self) -> MqttConfig:
        if self.tls_ca_file is None and not self.allow_plaintext and not is_loopback(self.host):
            raise ValueError(
                f"tls_ca_file is empty, so the seal would send its password and events in plain text to {self.host}: "
                "set tls_ca_file to the court's CA certificate (or allow_plaintext = true, for a test bench only)"
            )
        return self


def is_loopback(host: str) -> bool:
    """True for a broker on this machine: ``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plaintext_warning(config: AgentConfig) -> str | None:
    """The warning logged at every start (and by ``check-config``) of a seal allowed plain TCP to a remote broker."""
    mqtt = config.mqtt
    if mqtt.tls_ca_file is not None or is_loopback(mqtt.host):
        return None
    return (
        f"mqtt.allow_plaintext: PLAIN TCP to {mqtt.host}:{mqtt.port} — the seal's MQTT password and every event, "
        "command and receipt can be read and altered on the network; set mqtt.tls_ca_file"
    )


class PirConfig(_Section):
    pin: int = Field(17, ge=0, le=27, description="BCM GPIO number of the PIR sensor's OUT line (GPIO17 = pin 11).")


class TamperConfig(_Section):
    enabled: bool = Field(True, description="Watch the enclosure's tamper switch.")
    pin: int = Field(
        27, ge=0, le=27, description="BCM GPIO of the lid switch (GPIO27 = pin 13; pull-up, lid open = high)."
    )


class SensorsConfig(_Section):
    """The bound on a flapping sensor's edges, the watch for a stuck PIR (:mod:`seal_agent.behaviour.sensor_bound`)."""

    trigger_burst: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description="Full triggers (event, pictures) a sensor may give in a row before it flaps.",
    )
    trigger_refill_s: float = Field(
        10, ge=1, le=86400, description="One more full trigger is allowed each this many seconds."
    )
    summary_s: float = Field(
        60, ge=1, le=3600, description="While a sensor flaps, sign the edges merged at most this often."
    )
    quiet_s: float = Field(
        30, ge=1, le=3600, description="A flapping sensor without an edge this long is normal again."
    )
    stuck_after_s: float = Field(
        600, ge=1, le=86400, description="A PIR reading motion this long without an edge is signed sensor_stuck."
    )


class CommandsConfig(_Section):
    server_public_key: str = Field(
        "",
        max_length=100,
        description="The court server's Ed25519 public key (base64 of 32 bytes), which signs its commands and its "
        "receipts. Required to run: the seal deletes an event only on a receipt signed by it.",
    )

    @field_validator("server_public_key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                verify_key_from_b64(value)
            except SignatureError as exc:
                raise ValueError(str(exc)) from None
        return value

    def verify_key(self) -> VerifyKey | None:
        return verify_key_from_b64(self.server_public_key) if self.server_public_key else None


class DeliveryConfig(_Section):
    receipt_timeout_s: float = Field(
        60,
        ge=1,
        le=3600,
        description="First re-send interval of each event: one the broker acknowledged but the court has not "
        "receipted this long after its last sending is sent again by itself, if a later one was receipted or as a "
        "probe when no receipt came for that long (the broker may have lost it).",
    )
    receipt_timeout_max_s: float = Field(
        3600,
        ge=1,
        le=86400,
        description="Each event's re-send interval doubles with each of its re-sends, up to this.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> DeliveryConfig:
        if self.receipt_timeout_max_s < self.receipt_timeout_s:
            raise ValueError("receipt_timeout_max_s must not be below receipt_timeout_s")
        return self


class WarningConfig(_Section):
    languages: list[Language] = Field(
        ["zh", "en"],
        min_length=1,
        max_length=8,
        description="Warning languages in play order; each needs sounds_dir/warning_<language>.wav.",
    )
    sounds_dir: OptionalPath = Field(
        None, description="Directory of the warning WAV files; empty means the repository's sounds/ directory."
    )
    repeat_s: float = Field(10, ge=1, le=3600, description="Repeat the warning this often while presence continues.")
    max_repeats: int = Field(3, ge=0, le=100, description="Repeat at most this many times per presence.")
    cooldown_s: float = Field(
        30, ge=0, le=86400, description="After a warned presence ends, stay silent for this long."
    )

    @property
    def sounds_path(self) -> Path:
        return self.sounds_dir or DEFAULT_SOUNDS_DIR

    def sound_files(self) -> list[Path]:
        """The WAV files to play, in order."""
        return [self.sounds_path / f"warning_{lang}.wav" for lang in self.languages]


class AgentConfig(_Section):
    device_id: str = Field(
        pattern=DEVICE_ID_PATTERN.pattern,
        description="The seal's id: 1-64 of a-z 0-9 _ -; also its MQTT username and topic level.",
    )
    case_no: str = Field(
        min_length=1,
        max_length=64,
        description="The enforcement case (案号) the seal is bound to, e.g. (2021)苏0214执1234号 (ASCII or full-width "
        "parentheses); its events name it as written here, and it obeys only commands issued for it.",
    )
    state_dir: ConfigPath = Field(
        description="Directory for the device key (device.key), the outbox (outbox.sqlite), the chain's identity "
        "(chain.json), the last connection's stamp (connection_stamp) and snapshots/."
    )
    heartbeat_s: float = Field(60, ge=1, le=86400, description="Period of the heartbeat event in seconds.")
    mqtt: MqttConfig = Field(description="Connection to the court's MQTT broker.")
    pir: PirConfig = Field(default_factory=PirConfig, description="The PIR presence sensor.")
    warning: WarningConfig = Field(default_factory=WarningConfig, description="The spoken warning.")
    camera: CameraConfig = Field(default_factory=CameraConfig, description='The camera; source "" = none.')
    tamper: TamperConfig = Field(default_factory=TamperConfig, description="The enclosure's tamper switch.")
    sensors: SensorsConfig = Field(
        default_factory=SensorsConfig, description="Flapping and stuck sensors: how many triggers, how often signed."
    )
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="Signed commands from the court.")
    delivery: DeliveryConfig = Field(
        default_factory=DeliveryConfig, description="Re-sending what the court has not receipted."
    )

    @property
    def mqtt_username(self) -> str:
        return self.mqtt.username or self.device_id

    @property
    def key_path(self) -> Path:
        return self.state_dir / "device.key"

    @property
    def outbox_path(self) -> Path:
        return self.state_dir / "outbox.sqlite"

    @property
    def snapshot_dir(self) -> Path:
        return self.state_dir / "snapshots"


#: The line shown above a configuration's problems (which are pydantic's words, in English, each naming its key).
CONFIG_LEAD = "封条配置有误，请按下列各项更正 / the seal's configuration is invalid:"


def parse_config(text: str) -> AgentConfig:
    """Parse TOML text; raise :class:`ConfigError` naming each bad key. Strict: a value of another TOML type than
    its key's is refused, never converted (:mod:`seal_agent.config_types`)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"(toml): {exc}"]) from None
    try:
        return AgentConfig.model_validate(data, strict=True)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def load_config(path: Path) -> AgentConfig:
    """Read and validate the file at ``path``; raise :class:`ConfigError` naming each bad key."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"(file): cannot read {path}: {exc}"]) from None
    return parse_config(text)


def describe_validation_error(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(root)"
        problems.append(f"{key}: {wrong_type(err) or err['msg'].removeprefix('Value error, ')}")
    return problems


def read_password(config: AgentConfig) -> str:
    """The MQTT password: the first line of ``mqtt.password_file``, stripped of surrounding white space (as the
    court server reads its own). Raise :class:`ConfigError` if the file is missing, unreadable, not UTF-8, or its
    first line is empty."""
    path = config.mqtt.password_file
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"mqtt.password_file: cannot read {path}: {exc}"]) from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise ConfigError([f"mqtt.password_file: {path} is empty (the first line must hold the password)"])
    return password


#: Why a seal does not run without the court's key.
NO_COURT_KEY = (
    "commands.server_public_key: not set; the seal deletes an event only when the court's signed receipt names it, "
    "so without the court's key nothing would ever leave its outbox (`seal-server court-key` prints the key)"
)


def court_key(config: AgentConfig) -> VerifyKey:
    """The pinned court key; raise :class:`ConfigError` (:data:`NO_COURT_KEY`) if there is none."""
    key = config.commands.verify_key()
    if key is None:
        raise ConfigError([NO_COURT_KEY])
    return key
