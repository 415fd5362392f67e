"""Test helpers for the agent: the court's side of MQTT (receipts included), a speaker double, configs, subprocess
agents. Every seal config pins :data:`COURT_KEY`, the test court's key, which signs the receipts and commands."""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from seal_agent.config import load_config
from seal_agent.interfaces import WarningPlayback
from seal_agent.runtime import SealRuntime
from seal_dev.alsa_sink import alsa_file_config
from seal_dev.broker import PrivateBroker
from seal_protocol import (
    Envelope,
    MessageKind,
    SealStatus,
    cmd_topic,
    decode_envelope,
    decode_status,
    envelope_hash,
    parse_topic,
    subscription_all,
)
from seal_protocol.receipts import encode_receipt
from seal_protocol.signing import (
    SigningKey,
    VerifyKey,
    generate_signing_key,
    load_signing_key,
    public_key_b64,
    verify_envelope,
)
from seal_protocol.topics import receipt_topic
from server.seals.broker_files import SERVER_USERNAME

REPO = Path(__file__).resolve().parents[2]
#: ``runtimes(config_path, speaker=..., **SealRuntime kwargs)`` from the ``runtimes`` fixture.
RuntimeFactory = Callable[..., SealRuntime]
SEAL_AGENT = Path(sys.executable).with_name("seal-agent")
#: The test court's key: every config from :func:`write_config` pins it; :class:`CourtSubscriber` signs with it.
COURT_KEY = generate_signing_key()
COURT_PUBLIC_KEY = public_key_b64(COURT_KEY)


@dataclass
class Received:
    envelope: Envelope
    data: bytes
    dup: bool = False  # the broker's DUP flag: a copy it delivers again (after a reconnect of this subscriber)


@dataclass
class ReceivedSnapshot:
    device_id: str
    sha: str  # the topic's last level
    data: bytes
    at: float  # time.monotonic() on arrival


@dataclass
class CourtSubscriber:
    """A paho client with the court server's account: collects every seal's events, snapshots and status
    messages, publishes commands, and — like the court server once it has committed a message — a signed receipt
    for every event and snapshot it receives (the server account may write every seal's ``cmd`` and ``receipt``).

    ``persistent=True`` keeps its session (and subscription) in the broker across a broker restart.
    ``receipting`` False (or set to False later): nothing is receipted, the seal keeps everything.
    """

    broker: PrivateBroker
    persistent: bool = False
    receipting: bool = True
    key: SigningKey = COURT_KEY
    client_id: str = field(default_factory=lambda: "court-test-" + secrets.token_hex(4))
    events: list[Received] = field(default_factory=list)
    statuses: list[tuple[str, SealStatus]] = field(default_factory=list)
    #: Each status's (device id, state, ts: its connection's stamp), in arrival order.
    stamps: list[tuple[str, SealStatus, str]] = field(default_factory=list)
    snapshots: list[ReceivedSnapshot] = field(default_factory=list)
    #: Every event type (``"event:<type>"``) and snapshot hash (``"snapshot:<sha>"``) in arrival order.
    arrivals: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(SERVER_USERNAME, self.broker.users[SERVER_USERNAME])
        client.reconnect_delay_set(1, 1)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    def start(self, timeout: float = 30.0) -> CourtSubscriber:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300 if self.persistent else 0
        self._client.connect_async(
            "127.0.0.1", self.broker.port, clean_start=not self.persistent, properties=props, keepalive=10
        )
        self._client.loop_start()
        assert self._subscribed.wait(timeout), "court subscriber did not subscribe"
        return self

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(
                [(subscription_all(kind), 1) for kind in (MessageKind.EVENT, MessageKind.STATUS, MessageKind.SNAPSHOT)]
            )

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        assert not any(rc.is_failure for rc in rcs), rcs
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = parse_topic(message.topic)
        if self.receipting and topic.kind in (MessageKind.EVENT, MessageKind.SNAPSHOT):
            self.send_receipt(topic.device_id, [hashlib.sha256(message.payload).hexdigest()], wait=False)
        with self._cond:
            if topic.kind is MessageKind.EVENT:
                self.events.append(Received(decode_envelope(message.payload), bytes(message.payload), message.dup))
                self.arrivals.append(f"event:{self.events[-1].envelope.type.value}")
            elif topic.kind is MessageKind.STATUS:
                state, ts = decode_status(message.payload)
                self.statuses.append((topic.device_id, state))
                self.stamps.append((topic.device_id, state, ts))
            elif topic.kind is MessageKind.SNAPSHOT:
                assert topic.sha256 is not None
                item = ReceivedSnapshot(topic.device_id, topic.sha256, bytes(message.payload), time.monotonic())
                self.snapshots.append(item)
                self.arrivals.append(f"snapshot:{item.sha}")
            self._cond.notify_all()

    def publish_command(self, device_id: str, payload: bytes, timeout: float = 30.0) -> None:
        """Publish ``payload`` on the seal's ``cmd`` topic at QoS 1 and wait for the broker's PUBACK."""
        info = self._client.publish(cmd_topic(device_id), payload, qos=1)
        info.wait_for_publish(timeout)
        assert info.is_published()

    def send_receipt(
        self, device_id: str, hashes: list[str], *, key: SigningKey | None = None, wait: bool = True
    ) -> None:
        """Publish a receipt for ``hashes`` (signed by ``key``, default the court's) to the seal, QoS 1."""
        self.publish_receipt(device_id, encode_receipt(device_id, hashes, key or self.key), wait=wait)

    def publish_receipt(self, device_id: str, payload: bytes, *, wait: bool = True, timeout: float = 30.0) -> None:
        """Publish ``payload`` on the seal's ``receipt`` topic at QoS 1 (and wait for the broker's PUBACK)."""
        info = self._client.publish(receipt_topic(device_id), payload, qos=1)
        if wait:
            info.wait_for_publish(timeout)
            assert info.is_published()

    def sync(self, timeout: float = 30.0) -> None:
        """Return once the broker holds this client's acknowledgements of every message it has received so far (a
        broker stopped then has none of them in flight to deliver again).

        paho acknowledges a message on its network thread once ``on_message`` has returned, and each end handles a
        connection's packets in order: the broker's answer to a first publish is handled after every message that
        came before it (whose acknowledgements are queued by then), and its answer to a second one after the broker
        has read those acknowledgements. Published on the receipt topic of a seal that does not exist."""
        for _ in range(2):
            self.publish_receipt("seal-sync", b"sync", timeout=timeout)

    def snapshot_hashes(self, device_id: str) -> set[str]:
        with self._cond:
            return {item.sha for item in self.snapshots if item.device_id == device_id}

    def payloads(self, device_id: str, type: str) -> list[dict[str, Any]]:
        """Payloads of ``device_id``'s events of ``type``, in arrival order."""
        return [r.envelope.payload for r in self.of(device_id) if r.envelope.type.value == type]

    def wait_for(self, predicate: Callable[[CourtSubscriber], bool], timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def of(self, device_id: str) -> list[Received]:
        with self._cond:
            return [r for r in self.events if r.envelope.device_id == device_id]

    def seqs(self, device_id: str) -> set[int]:
        return {r.envelope.seq for r in self.of(device_id)}

    def types(self, device_id: str) -> list[str]:
        return [r.envelope.type.value for r in self.of(device_id)]

    def last_status(self, device_id: str) -> SealStatus | None:
        with self._cond:
            states = [state for dev, state in self.statuses if dev == device_id]
        return states[-1] if states else None


def warning_outcome(court: CourtSubscriber, device_id: str, event: Envelope, timeout: float = 30.0) -> dict[str, Any]:
    """What the warning of ``event`` (an intrusion, tamper or test_warning ack) really did: the event's own
    ``warning``/``result`` and ``warning_languages`` if the warning was over when it was committed, else those of the
    ``warning_result`` naming its seq (waited for)."""
    payload = event.payload
    warning = payload.get("warning", payload.get("result"))
    if warning != "started":
        return {"warning": warning, "warning_languages": payload["warning_languages"]}

    def result() -> dict[str, Any] | None:
        found = [p for p in court.payloads(device_id, "warning_result") if p["trigger_seq"] == event.seq]
        return found[0] if found else None

    assert court.wait_for(lambda c: result() is not None, timeout), f"no warning_result for seq {event.seq}"
    follow_up = result()
    assert follow_up is not None
    assert follow_up["trigger"] == ("command_ack" if event.type.value == "command_ack" else event.type.value)
    return {"warning": follow_up["warning"], "warning_languages": follow_up["warning_languages"]}


def check_chain(received: list[Received], key: VerifyKey) -> list[int]:
    """Assert every event verifies, duplicates are byte-identical and each prev_hash links to seq-1.

    Returns the distinct seqs in first-arrival order.
    """
    by_seq: dict[int, bytes] = {}
    order: list[int] = []
    for item in received:
        verify_envelope(item.envelope, key)
        seq = item.envelope.seq
        if seq in by_seq:
            assert by_seq[seq] == item.data, f"two different events with seq {seq}"
            continue
        by_seq[seq] = item.data
        order.append(seq)
    for seq, data in by_seq.items():
        envelope = decode_envelope(data)
        if seq == 1:
            assert envelope.prev_hash is None
        elif seq - 1 in by_seq:
            assert envelope.prev_hash == envelope_hash(by_seq[seq - 1]), f"chain broken at seq {seq}"
    return order


class RecordingSpeaker:
    """A :class:`seal_agent.interfaces.Speaker` double that counts warnings (for tests without sound): each one
    "plays" every language at once, so it is over (``played``) before its event is committed."""

    def __init__(self, languages: tuple[str, ...] = ("zh", "en")) -> None:
        self.languages = languages
        self.plays = 0
        self.stops = 0
        self._cond = threading.Condition()

    def play_warning(self) -> WarningPlayback | None:
        with self._cond:
            self.plays += 1
            self._cond.notify_all()
        playback = WarningPlayback(self.languages)
        for language in self.languages:
            playback.finished(language, "played")
        playback.end()
        return playback

    def stop(self) -> None:
        self.stops += 1

    def is_playing(self) -> bool:
        return False

    def wait_plays(self, count: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.plays >= count, timeout)


def write_config(
    directory: Path,
    broker: PrivateBroker,
    *,
    device_id: str = "seal-test-1",
    username: str | None = None,
    languages: tuple[str, ...] = ("zh", "en"),
    heartbeat_s: float = 60,
    repeat_s: float = 10,
    max_repeats: int = 3,
    cooldown_s: float = 30,
    register: bool = True,
    tamper: bool = False,
    server_public_key: str = COURT_PUBLIC_KEY,
    camera: str = "",
    sensors: str = "",
) -> Path:
    """Write a seal config (and its password file) into ``directory``; register the account with ``broker``.

    ``camera`` is the text of a ``[camera]`` section (empty: no camera); ``sensors`` the lines of ``[sensors]``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    account = username or device_id
    if register:
        broker.add_user(account, password)
        broker.reload()
    (directory / "mqtt-password").write_text(password + "\n")
    user_line = f'username = "{username}"' if username else ""
    langs = ", ".join(f'"{lang}"' for lang in languages)
    path = directory / "seal.toml"
    path.write_text(
        f"""device_id = "{device_id}"
case_no = "(2021)苏0214执1234号"
state_dir = "{directory / "state"}"
heartbeat_s = {heartbeat_s}
[mqtt]
host = "127.0.0.1"
port = {broker.port}
{user_line}
password_file = "{directory / "mqtt-password"}"
keepalive_s = 10
tls_ca_file = ""
[pir]
pin = 17
[warning]
languages = [{langs}]
sounds_dir = ""
repeat_s = {repeat_s}
max_repeats = {max_repeats}
cooldown_s = {cooldown_s}
[tamper]
enabled = {"true" if tamper else "false"}
pin = 27
[commands]
server_public_key = "{server_public_key}"
[sensors]
{sensors}
{camera}
""",
        encoding="utf-8",
    )
    return path


def agent_env(alsa_sink: Path | None = None) -> dict[str, str]:
    """Environment for a ``seal-agent`` subprocess: this checkout first on the path; ALSA into a file if given."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("GPIOZERO_PIN_FACTORY", None)
    if alsa_sink is not None:
        env["ALSA_CONFIG_PATH"] = str(alsa_file_config(alsa_sink))
    return env


def start_agent(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Start ``seal-agent ARGS`` with stdin as a pipe (for 'm'/'q') and stderr into ``log``."""
    with log.open("a") as err:
        return subprocess.Popen(
            [str(SEAL_AGENT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll a condition that has no notification (a file's content) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pulse(factory: MockFactory, pin: int = 17) -> None:
    """A presence: the PIR's pin goes high and low again."""
    factory.pin(pin).drive_high()
    factory.pin(pin).drive_low()


def verify_key(config_path: Path) -> VerifyKey:
    """The public key of the seal configured in ``config_path`` (its key file exists once a runtime was built)."""
    return load_signing_key(load_config(config_path).key_path).verify_key
