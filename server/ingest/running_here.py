"""Which court clients of a configuration run on this machine: ``seal-server end-sessions`` refuses to end their
sessions, which would take them over.

It reads the command lines of this machine's processes (``/proc``): a ``seal-server run`` (or ``python -m
server.cli run``) holds the plain client id's session, a ``seal-server ingest --workers N`` those of workers 1 to N,
when started with the same configuration file (a relative path is taken from the process's working directory, when
it may be read). Processes on other machines, or started with a copy of the file, are not seen here.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def roles_running_here(config: Path) -> dict[str, int]:
    """The client roles (``""`` for ``run``, ``ingest-<i>``) that processes of this machine started with ``config``
    hold, each with one such process's id."""
    found: dict[str, int] = {}
    for entry in PROC.glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if _started_with(entry, argv, config):
                found.update(dict.fromkeys(_roles(argv), pid))
        except (OSError, ValueError):  # ended meanwhile, or not ours to read
            continue
    return found


def _started_with(entry: Path, argv: list[str], config: Path) -> bool:
    is_server = any(Path(arg).name == "seal-server" for arg in argv[:2]) or "server.cli" in argv[:6]  # python -X … -m
    value = _option(argv, "--config")
    if not is_server or value is None:
        return False
    path = Path(value)
    if not path.is_absolute():
        path = (entry / "cwd").resolve(strict=True) / path
    return os.path.samefile(path, config)


def _roles(argv: list[str]) -> list[str]:
    if "run" in argv:
        return [""]
    if "ingest" in argv:
        return [f"ingest-{i}" for i in range(1, int(_option(argv, "--workers") or 1) + 1)]
    return []


def _option(argv: list[str], name: str) -> str | None:
    """The value of option ``name`` in ``argv``, also given by a prefix of its name (``--worker 3``, ``--conf=…``),
    as argparse takes it (an ambiguous one would have stopped that process)."""
    for i, arg in enumerate(argv):
        given, equals, value = arg.partition("=")
        if len(given) < 3 or not given.startswith("--") or not name.startswith(given):
            continue
        if equals:
            return value
        if i + 1 < len(argv):
            return argv[i + 1]
    return None
