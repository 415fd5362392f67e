"""``seal-agent``: the command line around :class:`~seal_agent.runtime.SealRuntime` (the composition root).

Commands: ``check-config --config FILE``, ``keygen --config FILE``, ``run --config FILE`` (a Raspberry Pi) and
``simulate --config FILE`` (the same agent on gpiozero mock pins, optionally with a video file as the camera).
``check-config FILE`` (the file as a positional argument) is still accepted, for units installed before ``--config``.
Every command takes ``--log-level LEVEL`` (debug, info, warning, error; any case) and ``--log-format text|json``,
before or after its name. Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import NoReturn, TextIO

from seal_agent import __version__
from seal_agent.config import CONFIG_LEAD, AgentConfig, load_config, plaintext_warning
from seal_agent.config_checks import (
    UNIT_CONFIG,
    camera_warnings,
    case_no_warning,
    check_camera,
    check_files,
    example_warnings,
    root_warning,
    secret_warnings,
    unit_warnings,
)
from seal_agent.errors import ConfigError, SealAgentError, SealStateError, StateReadOnly, read_only
from seal_agent.pin_checks import pin_warnings
from seal_agent.runtime import SealRuntime, keygen
from seal_agent.state_checks import check_config_state_problems, root_refusal, state_file_problems
from seal_protocol.signing import public_key_b64

logger = logging.getLogger("seal_agent.cli")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
#: The state directory cannot be written (a failing card remounted read-only): :class:`StateReadOnly`.
EXIT_READ_ONLY = 3
#: The GIL switch interval of a running seal (Python's default is 5 ms): a thread that wants the GIL waits up to this
#: long for the holder to let go. With 0.5 ms, bench/agent_latency.py's p99 PIR edge -> commit and -> first warning
#: PCM fell to about half (docs/benchmarks.md, "Where the tail comes from").
SWITCH_INTERVAL_S = 0.0005


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for journald / log shippers: the same keys and timestamp form as the court
    server's (``ts`` in UTC with milliseconds and offset, ``level``, ``logger``, ``message``, ``exc`` if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _add_log_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--log-level`` and ``--log-format``, on the program and on each command (where they default to nothing, so
    that a value given before the command's name stands)."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        default="INFO" if defaults else argparse.SUPPRESS,
        help="debug, info, warning or error (default info)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        metavar="FORMAT",
        default="text" if defaults else argparse.SUPPRESS,
        help="text or json (one object a line); default text",
    )


def _add_config_option(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--config", required=required, type=Path, metavar="FILE", help="the seal's TOML configuration")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seal-agent", description="Court electronic seal (电子封条) agent.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_log_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _add_log_options(common, defaults=False)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser(
        "check-config",
        parents=[common],
        help="validate a configuration file; prints OK or each problem",
        # the usage argparse would write shows --config optional (the hidden positional form may give it instead)
        usage="%(prog)s [-h] [--log-level LEVEL] [--log-format FORMAT] --config FILE [--simulate]",
    )
    _add_config_option(check, required=False)  # required, but the positional form below may give it instead
    check.add_argument("file", nargs="?", type=Path, help=argparse.SUPPRESS)  # the form installed units still use
    check.add_argument(
        "--simulate",
        action="store_true",
        help="check it for `seal-agent simulate`, not `run`: a simulated seal's state_dir is then right, a real "
        "seal's is refused",
    )
    check.set_defaults(func=cmd_check_config, usage_error=check.error)

    keygen = commands.add_parser(
        "keygen", parents=[common], help="create the device key if needed; print its base64 public key"
    )
    _add_config_option(keygen)
    keygen.add_argument(
        "--simulated",
        action="store_true",
        help="the key of a simulated seal, for `simulate` only: marks a new state_dir as simulated (`run` refuses it)",
    )
    keygen.set_defaults(func=cmd_keygen)

    run = commands.add_parser("run", parents=[common], help="run the seal on a Raspberry Pi (real GPIO and sound)")
    _add_config_option(run)
    run.set_defaults(func=cmd_run)

    sim = commands.add_parser(
        "simulate",
        parents=[common],
        help="run the real agent on gpiozero mock pins; presence from a timer or from the keyboard",
        description="Type 'm' + Enter for a presence, 't' + Enter to open the lid (tamper) and 'c' to shut it, "
        "'q' + Enter to quit. Only with a throw-away configuration and a new, empty state_dir: simulate refuses a real "
        "seal's state_dir, marks its own as simulated (`run` refuses it) and every event it signs says so.",
    )
    _add_config_option(sim)
    sim.add_argument(
        "--camera-file", type=Path, metavar="VIDEO", help="play this video as the camera (overrides [camera] source)"
    )
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
    if args.command == "check-config":
        args.config = _check_config_file(args)
    configure_logging(args.log_level, args.log_format)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        _print_problems(exc.problems)
        return EXIT_CONFIG
    except StateReadOnly as exc:
        logger.error("%s", exc)
        return EXIT_READ_ONLY
    except SealAgentError as exc:
        logger.error("%s", exc)
        return EXIT_FAILURE


# -- commands -------------------------------------------------------------------------------------------------


def _check_config_file(args: argparse.Namespace) -> Path:
    """``check-config``'s file: ``--config FILE``, or the positional ``FILE`` of units installed before it."""
    usage_error: Callable[[str], NoReturn] = args.usage_error
    if args.config is not None and args.file is not None and args.config != args.file:
        usage_error("two different files: give one, with --config FILE")
    path: Path | None = args.config or args.file
    if path is None:
        usage_error("the following arguments are required: --config")
    return path


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _warn_plaintext(config)
    warnings = [root_warning(), case_no_warning(config), *example_warnings(config), *secret_warnings(config)]
    warnings += pin_warnings(config) + camera_warnings(config)
    if Path(os.path.abspath(args.config)) == UNIT_CONFIG:  # the file the systemd unit runs: check it as the unit would
        warnings += unit_warnings(config)
    for warning in warnings:
        if warning is not None:
            logger.warning("%s", warning)
    problems = check_files(config) + state_file_problems(config) + check_camera(config)
    problems += check_config_state_problems(config, simulate=args.simulate)
    if problems:
        _print_problems(problems)
        return EXIT_CONFIG
    _out("OK (for seal-agent simulate)" if args.simulate else "OK")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _refuse_root(config, "keygen")
    key, created = keygen(config, simulated=args.simulated)
    logger.info("%s device key %s", "created" if created else "existing", config.key_path)
    _out(public_key_b64(key))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    config = _load_checked(args.config, "run")
    _log_sound_card()
    return _run_until_stopped(config, pin_factory=None, drive=None)


def cmd_simulate(args: argparse.Namespace) -> int:
    from gpiozero.pins.mock import MockFactory

    from seal_agent.simulate import PresenceSimulator

    config = _load_checked(args.config, "simulate")
    if args.camera_file is not None:
        if not args.camera_file.is_file():
            raise ConfigError([f"--camera-file: {args.camera_file} is not a file"])
        camera = config.camera.model_copy(update={"source": str(args.camera_file)})
        config = config.model_copy(update={"camera": camera})
    if args.presence_s is None:
        args.presence_s = 2.0 if args.trigger_every is None else min(2.0, args.trigger_every / 2)
    if args.trigger_every is not None and args.presence_s >= args.trigger_every:
        raise ConfigError(["--presence-s: must be shorter than --trigger-every"])
    _log_sound_card()
    factory = MockFactory()
    simulator = PresenceSimulator(factory, config.pir.pin, presence_s=args.presence_s)
    lid = factory.pin(config.tamper.pin) if config.tamper.enabled else None

    def prepare(runtime: SealRuntime) -> None:
        if lid is not None:
            lid.drive_low()  # the pull-up reads "open" until the simulated switch is shut

    def drive(stop: threading.Event) -> None:
        if args.trigger_every is not None:
            logger.info("simulating a %.2f s presence every %.2f s", args.presence_s, args.trigger_every)
            _daemon("seal-simulator", lambda: simulator.run_every(args.trigger_every))
        keys: dict[str, Callable[[], None]] = {"m": simulator.pulse}
        if lid is not None:
            keys.update(t=lid.drive_high, c=lid.drive_low)
        logger.info("type 'm' + Enter for a presence, 't' to open the lid, 'c' to shut it, 'q' to quit")
        _daemon("seal-keyboard", lambda: _read_keyboard(sys.stdin, keys, stop))

    try:
        return _run_until_stopped(
            config, pin_factory=factory, drive=drive, on_stop=simulator.stop, prepare=prepare, simulated=True
        )
    finally:
        factory.close()


# -- running --------------------------------------------------------------------------------------------------


def _run_until_stopped(
    config: AgentConfig,
    *,
    pin_factory: object | None,
    drive: Callable[[threading.Event], None] | None,
    on_stop: Callable[[], None] | None = None,
    prepare: Callable[[SealRuntime], None] | None = None,
    simulated: bool = False,
) -> int:
    stop = _stop_on_signals()
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # see SWITCH_INTERVAL_S
    for problem in check_camera(config):
        logger.warning("%s: the seal warns and records without pictures until it appears", problem)
    for warning in camera_warnings(config):
        logger.warning("%s", warning)
    if simulated:
        logger.warning("模拟封条：引脚为模拟，所签事件均标记 simulated / simulated seal, mock pins: its events say so")
    with SealRuntime(config, pin_factory=pin_factory, simulated=simulated) as runtime:
        if prepare is not None:
            prepare(runtime)
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


def _load_checked(path: Path, command: str) -> AgentConfig:
    config = load_config(path)
    _refuse_root(config, command)
    _warn_plaintext(config)
    warnings = [case_no_warning(config), *example_warnings(config), *secret_warnings(config), *pin_warnings(config)]
    for warning in warnings:
        if warning is not None:
            logger.warning("%s", warning)
    if read_only(config.state_dir):
        raise StateReadOnly(config.state_dir, os.strerror(errno.EROFS))
    problems = check_files(config) + state_file_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _refuse_root(config: AgentConfig, command: str) -> None:
    """Root must not write the service user's state directory (:func:`~seal_agent.state_checks.root_refusal`)."""
    if (refusal := root_refusal(config, command)) is not None:
        raise SealStateError(refusal)


def _warn_plaintext(config: AgentConfig) -> None:
    if (warning := plaintext_warning(config)) is not None:
        logger.warning("%s", warning)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _read_keyboard(stream: TextIO, keys: dict[str, Callable[[], None]], stop: threading.Event) -> None:
    for line in stream:
        command = line.strip().lower()
        if command in keys:
            keys[command]()
        elif command == "q":
            stop.set()
            return
        elif command:
            logger.warning("unknown input %r: %s or 'q' = quit", command, ", ".join(repr(key) for key in keys))
    logger.info("stdin closed; running until SIGTERM or SIGINT")


def _log_sound_card() -> None:
    from seal_agent.devices.speaker import sound_card_problem

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
    """The configuration's problems under a Chinese and English lead line (:data:`CONFIG_LEAD`), one a line."""
    print(CONFIG_LEAD, file=sys.stderr)  # noqa: T201 - CLI output
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)  # noqa: T201 - CLI output


def _out(text: str) -> None:
    print(text)  # noqa: T201 - CLI output


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value
