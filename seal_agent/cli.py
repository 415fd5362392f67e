"""``seal-agent``: the composition root. The only place where gpiozero, simpleaudio and paho are wired together.

Commands: ``check-config FILE``, ``keygen --config FILE``, ``run --config FILE`` (a Raspberry Pi) and
``simulate --config FILE`` (the same agent on gpiozero mock pins). Exit codes: 0 success, 1 runtime failure,
2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TextIO

from seal_agent import __version__
from seal_agent.config import AgentConfig, check_files, load_config, read_password
from seal_agent.core import SealAgent, SealIdentity
from seal_agent.errors import ConfigError, SealAgentError
from seal_agent.interfaces import Speaker
from seal_agent.warning import WarningSettings
from seal_protocol.signing import load_or_create_signing_key, public_key_b64

logger = logging.getLogger("seal_agent.cli")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for journald / log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seal-agent", description="Court electronic seal (电子封条) agent.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object a line")
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check-config", help="validate a configuration file; prints OK or each problem")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_check_config)

    keygen = commands.add_parser("keygen", help="create the device key if needed; print its base64 public key")
    keygen.add_argument("--config", required=True, type=Path)
    keygen.set_defaults(func=cmd_keygen)

    run = commands.add_parser("run", help="run the seal on a Raspberry Pi (real GPIO and sound)")
    run.add_argument("--config", required=True, type=Path)
    run.set_defaults(func=cmd_run)

    sim = commands.add_parser(
        "simulate",
        help="run the real agent on gpiozero mock pins; presence from a timer or from the keyboard",
        description="Without --trigger-every, type 'm' + Enter for a presence and 'q' + Enter to quit.",
    )
    sim.add_argument("--config", required=True, type=Path)
    sim.add_argument("--trigger-every", type=_positive, metavar="SECONDS", help="simulate a presence periodically")
    sim.add_argument(
        "--presence-s",
        type=_positive,
        metavar="SECONDS",
        help="length of a presence (default 2 s, at most half of --trigger-every)",
    )
    sim.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return EXIT_CONFIG
    except SealAgentError as exc:
        logger.error("%s", exc)
        return EXIT_FAILURE


# -- commands -------------------------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    problems = check_files(config)
    if problems:
        _print_problems(problems)
        return EXIT_CONFIG
    _out("OK")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, created = load_or_create_signing_key(config.key_path)
    logger.info("%s device key %s", "created" if created else "existing", config.key_path)
    _out(public_key_b64(key))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    config = _load_checked(args.config)
    _log_sound_card()
    return _run_until_stopped(config, pin_factory=None, drive=None)


def cmd_simulate(args: argparse.Namespace) -> int:
    from gpiozero.pins.mock import MockFactory

    from seal_agent.simulate import PresenceSimulator

    config = _load_checked(args.config)
    if args.presence_s is None:
        args.presence_s = 2.0 if args.trigger_every is None else min(2.0, args.trigger_every / 2)
    if args.trigger_every is not None and args.presence_s >= args.trigger_every:
        raise ConfigError(["--presence-s: must be shorter than --trigger-every"])
    _log_sound_card()
    factory = MockFactory()
    simulator = PresenceSimulator(factory, config.pir.pin, presence_s=args.presence_s)

    def drive(stop: threading.Event) -> None:
        if args.trigger_every is not None:
            logger.info("simulating a %.2f s presence every %.2f s", args.presence_s, args.trigger_every)
            _daemon("seal-simulator", lambda: simulator.run_every(args.trigger_every))
        else:
            logger.info("type 'm' + Enter for a presence, 'q' + Enter to quit")
            _daemon("seal-keyboard", lambda: _read_keyboard(sys.stdin, simulator.pulse, stop))

    try:
        return _run_until_stopped(config, pin_factory=factory, drive=drive, on_stop=simulator.stop)
    finally:
        factory.close()


# -- composition ----------------------------------------------------------------------------------------------


class SealRuntime:
    """One seal with its real adapters wired together: the composition root of ``run`` and ``simulate``.

    ``pin_factory`` None means gpiozero's default (the Pi's GPIO); ``speaker`` None means simpleaudio.
    Build, :meth:`start`, and :meth:`close` (also on error: it closes whatever was opened).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        pin_factory: object | None = None,
        speaker: Speaker | None = None,
        reconnect_max_s: int = 60,
        retry_s: float = 30.0,
    ) -> None:
        from seal_agent.mqtt import MqttPublisher
        from seal_agent.outbox import Outbox
        from seal_agent.pir import PirSensor
        from seal_agent.speaker import WarningSpeaker

        self.config = config
        self._stack = ExitStack()
        try:
            config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            key, created = load_or_create_signing_key(config.key_path)
            if created:
                logger.info("created device key %s; public key %s", config.key_path, public_key_b64(key))
            self.outbox = self._stack.enter_context(Outbox(config.outbox_path))
            if speaker is None:
                real_speaker = WarningSpeaker(config.warning.sound_files())
                self._stack.callback(real_speaker.close)
                speaker = real_speaker
            self.speaker = speaker
            self.sensor = PirSensor(config.pir.pin, pin_factory=pin_factory)
            self._stack.callback(self.sensor.close)
            self.publisher = MqttPublisher(
                device_id=config.device_id,
                host=config.mqtt.host,
                port=config.mqtt.port,
                username=config.mqtt_username,
                password=read_password(config),
                keepalive_s=config.mqtt.keepalive_s,
                tls_ca_file=config.mqtt.tls_ca_file,
                reconnect_max_s=reconnect_max_s,
            )
            self.agent = SealAgent(
                identity=SealIdentity(config.device_id, config.case_no, key),
                motion=self.sensor,
                speaker=self.speaker,
                publisher=self.publisher,
                outbox=self.outbox,
                warning=WarningSettings(
                    repeat_s=config.warning.repeat_s,
                    max_repeats=config.warning.max_repeats,
                    cooldown_s=config.warning.cooldown_s,
                ),
                heartbeat_s=config.heartbeat_s,
                retry_s=retry_s,
            )
        except BaseException:
            self._stack.close()
            raise
        self._started = False

    def start(self) -> None:
        self.agent.start()
        self.publisher.start()
        self._started = True

    def close(self) -> None:
        """Stop the agent, send ``offline``, release the pin, the speaker and the outbox."""
        if self._started:
            self._started = False
            self.agent.stop()
            self.publisher.stop()
        self._stack.close()

    def __enter__(self) -> SealRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_until_stopped(
    config: AgentConfig,
    *,
    pin_factory: object | None,
    drive: Callable[[threading.Event], None] | None,
    on_stop: Callable[[], None] | None = None,
) -> int:
    stop = _stop_on_signals()
    with SealRuntime(config, pin_factory=pin_factory) as runtime:
        runtime.start()
        if drive is not None:
            drive(stop)
        while not stop.wait(1.0):
            pass
        logger.info("stopping")
        if on_stop is not None:
            on_stop()
    logger.info("stopped")
    return EXIT_OK


def _load_checked(path: Path) -> AgentConfig:
    config = load_config(path)
    problems = check_files(config)
    if problems:
        raise ConfigError(problems)
    return config


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _read_keyboard(stream: TextIO, pulse: Callable[[], None], stop: threading.Event) -> None:
    for line in stream:
        command = line.strip().lower()
        if command == "m":
            pulse()
        elif command == "q":
            stop.set()
            return
        elif command:
            logger.warning("unknown input %r: 'm' = presence, 'q' = quit", command)
    logger.info("stdin closed; running until SIGTERM or SIGINT")


def _log_sound_card() -> None:
    from seal_agent.speaker import sound_card_problem

    problem = sound_card_problem()
    if problem is None:
        return
    sink = os.environ.get("ALSA_CONFIG_PATH")
    if sink:
        logger.warning("%s; ALSA_CONFIG_PATH=%s decides where the warning goes", problem, sink)
    else:
        logger.warning("%s: the warning will not be heard (playback errors are logged, events still recorded)", problem)


def _daemon(name: str, target: Callable[[], None]) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201 - CLI output


def _out(text: str) -> None:
    print(text)  # noqa: T201 - CLI output


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
