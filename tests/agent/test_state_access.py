"""One agent run as root must not leave the service's state directory unusable, and ``check-config``, run as the
service's user, names every state file that user cannot open.

Found by a hostile review of the seal's install on a Pi: ``sudo seal-agent simulate`` (or ``run``, to debug) left
root-owned 0600 ``chain.json``, ``outbox.sqlite`` and ``snapshots/`` in the seal-owned ``/var/lib/court-seal``; the
service then failed at every start (Permission denied) and looped, while ``sudo -u seal seal-agent check-config``
still printed OK. ``nobody`` stands for the user ``seal`` here.
"""

from __future__ import annotations

import contextlib
import grp
import io
import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from seal_agent.cli import main
from seal_agent.config import parse_config
from seal_agent.state_checks import root_refusal
from tests.agent.helpers import SEAL_AGENT, agent_env
from tests.agent.test_config import VALID

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="gives the state directory to another account")

SERVICE = pwd.getpwnam("nobody")


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory ``nobody`` can enter (pytest's own tmp_path is root's, 0700), with a valid configuration whose
    state directory belongs to ``nobody`` (0700), as install.sh leaves /var/lib/court-seal to ``seal``, and its
    password root's, 0640, for nobody's group, as install.sh leaves it."""
    directory = Path(tempfile.mkdtemp(prefix="seal-state-access-"))
    try:
        directory.chmod(0o755)
        (directory / "pw").write_text("secret\n")
        os.chown(directory / "pw", 0, SERVICE.pw_gid)
        (directory / "pw").chmod(0o640)
        config = directory / "seal.toml"
        config.write_text(in_directory(directory), encoding="utf-8")
        config.chmod(0o644)
        state = directory / "state"
        state.mkdir(mode=0o700)
        os.chown(state, SERVICE.pw_uid, SERVICE.pw_gid)
        yield directory
    finally:
        shutil.rmtree(directory)


def in_directory(directory: Path) -> str:
    """tests.agent.test_config's VALID, its state_dir and password file in ``directory``."""
    return VALID.replace("var/demo/seal-demo-1/mqtt-password", str(directory / "pw")).replace(
        "var/demo/seal-demo-1", str(directory / "state")
    )


def as_service_user(argv: list[str]) -> tuple[int, str]:
    """``seal-agent ARGV`` (its ``main``) in a child process of this one that became ``nobody``: the exit code and
    what it wrote to stderr. (A new interpreter cannot run as nobody here: Python lives under /root.)"""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(SERVICE.pw_gid)
            os.setuid(SERVICE.pw_uid)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            os.write(write, err.getvalue().encode("utf-8"))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            os.write(write, f"child failed: {exc!r}".encode())
        finally:
            os.close(write)
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        stderr = pipe.read().decode("utf-8")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


def root_leftovers(state: Path) -> None:
    """What one ``sudo seal-agent simulate`` left there: root's files, mode 0600, and root's snapshot folder."""
    for name in ("chain.json", "outbox.sqlite"):
        (state / name).write_bytes(b"")
        (state / name).chmod(0o600)
    sqlite3.connect(state / "outbox.sqlite").close()
    (state / "snapshots" / "ab").mkdir(parents=True)
    (state / "snapshots").chmod(0o700)


def test_check_config_as_the_service_user_names_each_state_file_it_cannot_open(world: Path) -> None:
    config = str(world / "seal.toml")
    assert main(["check-config", "--config", config]) == 0  # as root, in this process: everything imported first
    code, err = as_service_user(["check-config", "--config", config])
    assert code == 0, err
    state = world / "state"
    key = state / "device.key"
    key.write_text("a key\n")
    key.chmod(0o600)
    os.chown(key, SERVICE.pw_uid, SERVICE.pw_gid)  # made by the service's user (install.sh's keygen): fine
    root_leftovers(state)

    code, err = as_service_user(["check-config", "--config", config])

    assert code == 2, err
    for path, zh, en in [
        (state / "chain.json", "读取", "read"),
        (state / "outbox.sqlite", "读写", "read and write"),
        (state / "snapshots", "读写", "read and write"),
    ]:
        assert f"当前用户 nobody 无法{zh} {path}（owner root, mode " in err, (path, err)
        assert f"the current user nobody cannot {en} {path} (owner root, mode " in err, (path, err)
    assert str(key) not in err
    assert f"fix: sudo chown -R nobody:{grp.getgrgid(SERVICE.pw_gid).gr_name} {state}" in err


def test_a_snapshot_file_the_service_user_cannot_read_is_named(world: Path) -> None:
    config = str(world / "seal.toml")
    assert main(["check-config", "--config", config]) == 0
    state = world / "state"
    folder = state / "snapshots" / "ab"
    folder.mkdir(parents=True)
    for path in (state / "snapshots", folder):
        os.chown(path, SERVICE.pw_uid, SERVICE.pw_gid)
    snapshot = folder / f"ab{'0' * 62}.jpg"
    snapshot.write_bytes(b"\xff\xd8")
    snapshot.chmod(0o600)  # root's

    code, err = as_service_user(["check-config", "--config", config])

    assert code == 2 and f"1 file(s) or folder(s) of the snapshot store ({snapshot})" in err, err


@pytest.mark.parametrize("command", ["simulate", "run", "keygen"])
def test_root_refuses_to_write_a_state_dir_another_user_owns(world: Path, command: str) -> None:
    """As root, ``simulate``, ``run`` and ``keygen`` start nothing in the service user's state directory."""
    result = subprocess.run(
        [str(SEAL_AGENT), command, "--config", str(world / "seal.toml")],
        input="m\nq\n",
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert f"seal-agent {command} 拒绝以 root 身份运行" in result.stderr
    assert f"sudo -u nobody seal-agent {command}" in result.stderr
    assert list((world / "state").iterdir()) == []


def test_root_may_use_a_state_dir_of_its_own(tmp_path: Path) -> None:
    """A test bench or a demo run as root in root's own directory: nothing to refuse."""
    assert root_refusal(parse_config(in_directory(tmp_path)), "simulate") is None
