"""hardware/install.sh where the reviewer ran it: as root with a pyenv first on PATH (the .venv was made with a
Python the user seal cannot run, and kept on a re-run), and in a container without systemd (``systemctl
daemon-reload`` stopped the script before it printed the seal's key). Its steps run here with fake commands."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.agent.test_install_script import INSTALL, install_tree_step


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root; the step gives the copy to root")
@pytest.mark.parametrize("runs_as_seal", [True, False], ids=["working", "broken"])
def test_the_venv_is_debian_s_python_s_and_one_the_seal_cannot_run_is_made_again(
    tmp_path: Path, runs_as_seal: bool
) -> None:
    """As root, the first ``python3`` on PATH was pyenv's under /root: the .venv it made would not run as the user
    seal (``runuser: failed to execute …/seal-agent: Permission denied``), and a re-run kept it, looking only at
    its owner and mode. The venv is made with Debian's Python, and one that does not run as seal is made again."""
    src, prefix = tmp_path / "src", tmp_path / "opt" / "court-seal"
    (src / "seal_agent").mkdir(parents=True)
    old_python = prefix / ".venv" / "bin" / "python"  # an earlier install's, root's and not writable by others
    old_python.parent.mkdir(parents=True)
    old_python.write_text("#!/bin/sh\n# the earlier install's\n" + ("exit 0\n" if runs_as_seal else "exit 126\n"))
    old_python.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        # the first python3 on PATH (pyenv's): must not be used
        "python3": f"touch {tmp_path / 'path-python3-used'}\nexit 1\n",
        "system-python3": 'mkdir -p "$4/bin" && printf "#!/bin/sh\\n# made again\\n" > "$4/bin/python"\n',
        # runuser -u seal -- CMD…: runs CMD (as root here; the broken python fails for anyone)
        "runuser": f'echo "$@" >> {tmp_path / "runuser.log"}\nshift 3\nexec "$@"\n',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "SYSTEM_PYTHON": str(bin_dir / "system-python3"),
        "SRC": str(src),
        "PREFIX": str(prefix),
        "CONF_DIR": str(tmp_path / "etc"),
        "STATE_DIR": str(tmp_path / "var"),
    }
    script = "set -euo pipefail\n" + install_tree_step()
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert f"-u seal -- {old_python} -c " in (tmp_path / "runuser.log").read_text()  # checked as the seal user
    if runs_as_seal:
        assert "the earlier install's" in old_python.read_text() and "made again" not in result.stderr
    else:
        assert old_python.read_text() == "#!/bin/sh\n# made again\n"
        assert "does not run as the user seal" in result.stderr and "made again" in result.stderr
    assert not (tmp_path / "path-python3-used").exists()
    assert re.search(r"^SYSTEM_PYTHON=/usr/bin/python3$", INSTALL.read_text("utf-8"), re.M)


def run_tail(tmp_path: Path, *, systemd: bool) -> tuple[subprocess.CompletedProcess[str], str]:
    """install.sh from its key (``pubkey=…``) to its end, with its ``ensure_ntp`` and ``start_seal``: a ``runuser``
    whose keygen prints the key and check-config ``OK``, an ``install`` and a ``systemctl`` that log their calls,
    the latter failing as it does where systemd is not PID 1; ``systemd``: whether systemd runs (its directory in
    /run). Returns the run and the calls logged."""
    text = INSTALL.read_text("utf-8")
    functions = [re.search(rf"^{name}\(\) \{{\n.*?^\}}\n", text, re.S | re.M) for name in ("ensure_ntp", "start_seal")]
    tail = re.search(r"^pubkey=\$\(runuser .*", text, re.S | re.M)
    assert all(functions) and tail, "install.sh no longer has ensure_ntp, start_seal and its key step"
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {
        "runuser": 'case "$*" in *keygen*) echo KEY-OF-THIS-SEAL;; *check-config*) echo OK;; esac\n',
        "timedatectl": "echo yes\n",
        "install": f'echo "install $*" >> {calls}\n',
        "systemctl": f'echo "systemctl $*" >> {calls}\n[ "$1" = is-active ] && exit 3\n'
        + ("exit 0\n" if systemd else 'echo "System has not been booted with systemd as init system" >&2; exit 1\n'),
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    running = tmp_path / "run-systemd-system"
    if systemd:
        running.mkdir()
    script = (
        "set -euo pipefail\nskipped=()\n"
        f"PREFIX=/opt/court-seal\nCONF_DIR=/etc/court-seal\nSYSTEMD_RUNNING={running}\n"
        + "".join(f.group(0) for f in functions if f)
        + tail.group(0)
    )
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30
    )
    return result, calls.read_text() if calls.exists() else ""


def test_without_systemd_the_key_is_printed_and_the_unit_s_steps_are_skipped_and_said(tmp_path: Path) -> None:
    """In a container (systemd not PID 1) `systemctl daemon-reload` failed under set -e before the key was printed,
    the key the README has the installer hand to the court's clerk."""
    result, calls = run_tail(tmp_path, systemd=False)
    assert result.returncode == 0, result.stderr
    assert "--public-key KEY-OF-THIS-SEAL" in result.stdout
    assert "systemctl" not in calls  # nothing of systemd's is tried
    skipped = result.stdout[result.stdout.index("Skipped:") :]
    assert "systemd (not running here" in skipped
    assert "sudo systemctl daemon-reload && sudo systemctl enable seal-agent && sudo systemctl restart seal-agent" in (
        skipped
    )
    assert "skipped systemctl daemon-reload, enable and start" in result.stderr


def test_with_systemd_the_key_comes_first_then_the_unit_is_enabled_and_started(tmp_path: Path) -> None:
    result, calls = run_tail(tmp_path, systemd=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("--public-key KEY-OF-THIS-SEAL") < result.stdout.index("seal-agent started")
    assert [line.split()[1] for line in calls.splitlines() if line.startswith("systemctl")] == [
        "daemon-reload",
        "enable",
        "is-active",
        "restart",
    ]
    assert "Skipped:" not in result.stdout
