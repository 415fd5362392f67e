"""Whether the process a pid file names is this court's broker, and signalling it only if so.

A pid file outlives its process (a broker started with ``-d`` that died, a reboot): the number it holds may by then
belong to any other process, which SIGHUP would hang up. So the server signals a process only when it is a live
Mosquitto (``/proc/PID/exe``) started with a configuration (``-c`` on ``/proc/PID/cmdline``) whose ``pid_file`` is the
one configured here: a Mosquitto of another configuration, a zombie, or any other program is left alone. The process
is held by a pidfd while it is examined and signalled through it, so a number reused meanwhile is not signalled.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from server.errors import BrokerUnavailable


@dataclass(frozen=True)
class NotOurBroker:
    """Why the process of a pid file is not this court's broker (for the operator)."""

    reason: str


def reload_broker(pid_file: Path) -> int | NotOurBroker:
    """SIGHUP to the broker ``pid_file`` names, if it is this court's; its pid, or why not. :class:`BrokerUnavailable`
    if it is ours but cannot be signalled, or the pid file cannot be read."""
    pid = _read_pid(pid_file)
    if isinstance(pid, NotOurBroker):
        return pid
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return NotOurBroker(f"stale pid file {pid_file}: no process {pid}")
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach process {pid} of {pid_file}: {exc.strerror}") from exc
    try:
        why_not = _why_not_ours(pid, pid_file)
        if why_not is not None:
            return NotOurBroker(f"stale pid file {pid_file}: process {pid} {why_not}")
        try:
            signal.pidfd_send_signal(handle, signal.SIGHUP)
        except ProcessLookupError:
            return NotOurBroker(f"stale pid file {pid_file}: process {pid} has ended")
        except OSError as exc:
            raise BrokerUnavailable(f"cannot signal the broker (pid {pid}): {exc.strerror}") from exc
        return pid
    finally:
        os.close(handle)


def running_broker(pid_file: Path) -> int | NotOurBroker:
    """The pid of this court's broker as ``pid_file`` names it, or why it names none (nothing is signalled)."""
    pid = _read_pid(pid_file)
    if isinstance(pid, NotOurBroker):
        return pid
    why_not = _why_not_ours(pid, pid_file)
    return pid if why_not is None else NotOurBroker(f"stale pid file {pid_file}: process {pid} {why_not}")


def _read_pid(pid_file: Path) -> int | NotOurBroker:
    try:
        text = pid_file.read_text().strip()
    except FileNotFoundError:
        return NotOurBroker(f"{pid_file} absent")
    except OSError as exc:
        raise BrokerUnavailable(f"cannot read {pid_file}: {exc.strerror}") from exc
    try:
        pid = int(text)
    except ValueError:
        return NotOurBroker(f"{pid_file} holds no process id")
    return pid if pid > 0 else NotOurBroker(f"{pid_file} holds no process id")


def _why_not_ours(pid: int, pid_file: Path) -> str | None:
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "has ended"
    if state in ("Z", "X"):
        return "has ended (a zombie)"
    try:
        exe = os.readlink(proc / "exe").removesuffix(" (deleted)")
    except PermissionError:  # a process that changed its user (Mosquitto started as root): its name, then
        exe = _read(proc / "comm")
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    if Path(exe).name != "mosquitto":
        return f"is not Mosquitto ({exe})"
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    conf = _conf_argument([os.fsdecode(arg) for arg in argv])
    if conf is None:
        return "is a Mosquitto started without a configuration file"
    try:
        cwd = Path(os.readlink(proc / "cwd")) if not Path(conf).is_absolute() else Path("/")
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    conf_path = cwd / conf
    if _configured_pid_file(conf_path, cwd) != pid_file.absolute().resolve():
        return f"is a Mosquitto of another configuration ({conf_path}), not one writing {pid_file}"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "?"


def _conf_argument(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv[1:], start=1):
        if arg in ("-c", "--config-file") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _configured_pid_file(conf: Path, cwd: Path) -> Path | None:
    """The ``pid_file`` a Mosquitto configuration names (the last one, as Mosquitto takes it)."""
    try:
        lines = conf.read_text(errors="replace").splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0] == "pid_file":
            found = (cwd / words[1].strip()).resolve()
    return found
