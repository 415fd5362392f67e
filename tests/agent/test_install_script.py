"""hardware/install.sh on plain Debian: a package with no installation candidate (python3-lgpio on a PC) is skipped
and said so, and the script goes on. Its lgpio step runs here with fake ``apt-cache`` and ``apt-get`` (nothing is
installed, nothing needs root)."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

INSTALL = Path(__file__).resolve().parents[2] / "hardware" / "install.sh"


def lgpio_step() -> str:
    """The ``candidate`` function and the python3-lgpio step of install.sh, as they are written there."""
    text = INSTALL.read_text("utf-8")
    function = re.search(r"^candidate\(\) \{\n.*?^\}\n", text, re.S | re.M)
    step = re.search(r"^if \[ -n \"\$\(candidate python3-lgpio\)\" \]; then\n.*?^fi\n", text, re.S | re.M)
    assert function and step, "install.sh no longer has its candidate() function and lgpio step"
    return function.group(0) + step.group(0)


def run_step(tmp_path: Path, policy: str) -> subprocess.CompletedProcess[str]:
    """Run the step with an ``apt-cache`` that prints ``policy`` and an ``apt-get`` that logs its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "policy.txt").write_text(policy, encoding="utf-8")
    fakes = {
        "apt-cache": f'[ "$1" = policy ] && cat {tmp_path / "policy.txt"}\n',
        "apt-get": f'echo "$@" >> {tmp_path / "apt-get.log"}\n',
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    script = "set -euo pipefail\nskipped=()\n" + lgpio_step() + 'echo "went on; skipped: ${#skipped[@]}"\n'
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        timeout=30,
    )


NO_CANDIDATE = """python3-lgpio:
  Installed: (none)
  Candidate: (none)
  Version table:
"""
PACKAGED = """python3-lgpio:
  Installed: (none)
  Candidate: 0.2.2-1~rpt1
  Version table:
     0.2.2-1~rpt1 500
        500 http://archive.raspberrypi.com/debian bookworm/main arm64 Packages
"""


@pytest.mark.parametrize("policy", [NO_CANDIDATE, ""], ids=["no-candidate", "unknown-package"])
def test_python3_lgpio_without_a_candidate_is_skipped_and_said_so(tmp_path: Path, policy: str) -> None:
    result = run_step(tmp_path, policy)
    assert result.returncode == 0, result.stderr
    assert "python3-lgpio has no installation candidate here" in result.stderr
    assert "skipped it, going on" in result.stderr
    assert result.stdout == "went on; skipped: 1\n"
    assert not (tmp_path / "apt-get.log").exists()


def test_python3_lgpio_with_a_candidate_is_installed(tmp_path: Path) -> None:
    result = run_step(tmp_path, PACKAGED)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "apt-get.log").read_text() == "install -y -qq python3-lgpio\n"
    assert result.stdout == "went on; skipped: 0\n"


def test_install_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, timeout=30).returncode == 0


SETUP = INSTALL.parents[1] / "scripts" / "setup.sh"
FAKE_PIP = """#!/bin/sh
echo "Collecting simpleaudio>=1.0"
echo "  Downloading simpleaudio-1.0.4.tar.gz (2.0 MB)"
echo "Building wheel for simpleaudio (pyproject.toml): started"
for n in $(seq 1 60); do echo "      compiler line $n"; done
echo "      fatal error: alsa/asoundlib.h: No such file or directory"
echo "ERROR: Failed building wheel for simpleaudio"
exit "${FAKE_PIP_RC:-1}"
"""


PIP_PROGRESS = Path(__file__).resolve().parents[2] / "scripts" / "pip_progress.sh"


def run_pip_install(tmp_path: Path, script: Path, rc: int) -> subprocess.CompletedProcess[str]:
    """``pip_install`` from scripts/pip_progress.sh, which ``script`` sources and calls with its label, around a
    fake pip that exits with ``rc``."""
    text = script.read_text("utf-8")
    assert "pip_progress.sh" in text, f"{script.name} no longer sources scripts/pip_progress.sh"
    label = "install.sh" if script == INSTALL else "setup"
    assert f"pip_install {label} " in text
    pip = tmp_path / "pip"
    pip.write_text(FAKE_PIP, encoding="utf-8")
    pip.chmod(0o755)
    body = f'set -euo pipefail\nsource {PIP_PROGRESS}\npip_install {label} {pip} install x\necho "went on"\n'
    return subprocess.run(
        ["bash", "-c", body],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "FAKE_PIP_RC": str(rc), "TMPDIR": str(tmp_path)},
        timeout=30,
    )


@pytest.mark.parametrize("script", [INSTALL, SETUP], ids=["install.sh", "setup.sh"])
def test_a_failed_pip_shows_the_end_of_its_output_and_stops(tmp_path: Path, script: Path) -> None:
    result = run_pip_install(tmp_path, script, rc=1)
    assert result.returncode == 1
    assert ":   simpleaudio>=1.0" in result.stdout  # the progress line, as it went
    assert "compiler line 5\n" not in result.stdout + result.stderr  # not everything: the last 40 lines
    assert "alsa/asoundlib.h: No such file or directory" in result.stderr  # the reason
    assert "went on" not in result.stdout


@pytest.mark.parametrize("script", [INSTALL, SETUP], ids=["install.sh", "setup.sh"])
def test_a_pip_that_succeeds_shows_one_line_per_package(tmp_path: Path, script: Path) -> None:
    result = run_pip_install(tmp_path, script, rc=0)
    assert result.returncode == 0, result.stderr
    assert "compiler line" not in result.stdout and result.stderr == ""
    assert result.stdout.splitlines()[-1] == "went on"
    assert not list(tmp_path.glob("court-seal-pip.*"))  # the full output is kept only when pip failed


def test_setup_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SETUP)], capture_output=True, timeout=30).returncode == 0


def install_tree_step() -> str:
    """install.sh from ``mkdir -p "$PREFIX" …`` to the creation of the .venv: the copy of the checkout."""
    text = INSTALL.read_text("utf-8")
    step = re.search(r'^mkdir -p "\$PREFIX".*?^.* -m venv[^\n]*\n', text, re.S | re.M)
    assert step, "install.sh no longer copies the checkout and makes its .venv"
    return step.group(0)


def owned_or_writable_by_others(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) not owned by root:root or writable by group or others."""
    found = []
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        writable = (info.st_mode & 0o022) and not path.is_symlink()
        if (info.st_uid, info.st_gid) != (0, 0) or writable:
            found.append(f"{path.relative_to(root)} {info.st_uid}:{info.st_gid} {oct(info.st_mode & 0o7777)}")
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root; the test gives files to another account")
def test_the_installation_is_root_s_whoever_cloned_the_checkout(tmp_path: Path) -> None:
    """The account that cloned (``nobody`` here, ``pi`` on a Pi) must not own /opt/court-seal, its sounds or its
    .venv, which systemd runs as the seal and the README's ``sudo seal-agent check-config`` as root; nor may anyone
    but root write there. A .venv left by an earlier install with a foreign owner is made again. Found by a hostile
    review (``rsync -a`` kept the clone's owner)."""
    nobody = pwd.getpwnam("nobody")
    src, prefix = tmp_path / "src", tmp_path / "opt" / "court-seal"
    (src / "sounds").mkdir(parents=True)
    (src / "sounds" / "warning_zh.wav").write_bytes(b"RIFF")
    (src / "seal_agent").mkdir()
    (src / "seal_agent" / "cli.py").write_text("print('hi')\n")
    (src / "seal_agent" / "cli.py").chmod(0o664)  # a clone made under umask 002
    (src / "sounds").chmod(0o775)
    old_venv = prefix / ".venv" / "bin"  # an earlier install's .venv, swapped by the cloning account
    old_venv.mkdir(parents=True)
    (old_venv / "python").write_text("#!/bin/sh\necho swapped\n")
    (old_venv / "python").chmod(0o755)
    for path in [src, *src.rglob("*"), prefix, *prefix.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    bin_dir = tmp_path / "bin"  # python3 -m venv stands in for Debian's: it makes .venv/bin/python
    bin_dir.mkdir()
    (bin_dir / "python3").write_text('#!/bin/sh\nmkdir -p "$4/bin" && printf "#!/bin/sh\\n" > "$4/bin/python"\n')
    (bin_dir / "python3").chmod(0o755)
    script = "set -euo pipefail\n" + install_tree_step()
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "SYSTEM_PYTHON": str(bin_dir / "python3"),
        "SRC": str(src),
        "PREFIX": str(prefix),
        "CONF_DIR": str(tmp_path / "etc"),
        "STATE_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (prefix / "sounds" / "warning_zh.wav").read_bytes() == b"RIFF"
    assert (prefix / ".venv" / "bin" / "python").read_text() == "#!/bin/sh\n"
    assert owned_or_writable_by_others(prefix) == []


def run_ntp_step(tmp_path: Path, timedatectl: str | None) -> subprocess.CompletedProcess[str]:
    """install.sh's ``ensure_ntp`` with a fake ``timedatectl`` of body ``timedatectl`` (None: no timedatectl)."""
    text = INSTALL.read_text("utf-8")
    function = re.search(r"^ensure_ntp\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert function and "\nensure_ntp\n" in text, "install.sh no longer has (or no longer calls) ensure_ntp"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if timedatectl is not None:
        (bin_dir / "timedatectl").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.log"}\n{timedatectl}\n')
        (bin_dir / "timedatectl").chmod(0o755)
    for tool in ("cat", "echo"):  # the PATH holds nothing else: `command -v timedatectl` finds only the fake
        (bin_dir / tool).symlink_to(f"/bin/{tool}")
    script = "set -euo pipefail\nskipped=()\n" + function.group(0) + 'ensure_ntp\necho "skipped: ${skipped[*]:-}"\n'
    return subprocess.run(
        ["/bin/bash", "-c", script], capture_output=True, text=True, env={"PATH": str(bin_dir)}, timeout=30
    )


@pytest.mark.parametrize(
    ("timedatectl", "turned_on", "skipped", "unsynced"),
    [
        # NTP off, set-ntp works: turned on; not yet synchronised: said so
        ('case "$*" in "show -p NTP --value") echo no;; "show -p NTPSynchronized --value") echo no;; esac', 1, 0, 1),
        # NTP off and no time service to turn on: skipped and listed
        ('case "$*" in "set-ntp true") exit 1;; *) echo no;; esac', 0, 1, 0),
        # on and synchronised: nothing to do or say
        ("echo yes", 0, 0, 0),
        (None, 0, 1, 0),  # no timedatectl at all (not systemd)
    ],
)
def test_install_turns_on_time_synchronisation_or_says_it_could_not(
    tmp_path: Path, timedatectl: str | None, turned_on: int, skipped: int, unsynced: int
) -> None:
    result = run_ntp_step(tmp_path, timedatectl)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "calls.log").read_text() if (tmp_path / "calls.log").exists() else ""
    assert ("turned on time synchronisation" in result.stdout) == bool(turned_on), result.stdout
    assert ("set-ntp true" in calls) == (timedatectl is not None and "echo yes" not in timedatectl)
    assert ("skipped: time synchronisation" in result.stdout) == bool(skipped), result.stdout
    assert ("not synchronised yet" in result.stdout) == bool(unsynced), result.stdout


def run_start_step(tmp_path: Path, *, active: bool, check_rc: int, check_out: str) -> subprocess.CompletedProcess[str]:
    """install.sh's ``start_seal`` (as written there, and called by it) with a ``systemctl`` whose ``is-active``
    says ``active`` and that logs its other calls, and a ``runuser`` whose check-config prints ``check_out`` and
    exits with ``check_rc``."""
    text = INSTALL.read_text("utf-8")
    function = re.search(r"^start_seal\(\) \{\n.*?^\}\n", text, re.S | re.M)
    assert function and re.search(r"^\s*start_seal$", text, re.M), "install.sh no longer has and calls start_seal()"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "check.txt").write_text(check_out, encoding="utf-8")
    fakes = {
        "systemctl": f'[ "$1" = is-active ] && exit {0 if active else 3}\necho "$@" >> {tmp_path / "calls.log"}\n',
        "runuser": f"cat {tmp_path / 'check.txt'}\nexit {check_rc}\n",
    }
    for name, body in fakes.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    script = (
        "set -euo pipefail\nPREFIX=/opt/court-seal\nCONF_DIR=/etc/court-seal\n" + function.group(0) + "start_seal\n"
    )
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30
    )


CAMERA_WARNING = "2026-12-07 07:00:00,000 WARNING seal_agent.cli: camera.source: /dev/video0 (camera 0) does not exist"
INVALID = "封条配置有误，请按下列各项更正 / the seal's configuration is invalid:\n  mqtt.password_file: empty"


@pytest.mark.parametrize("active", [True, False], ids=["upgrade", "first-install"])
def test_install_restarts_a_running_seal_once_the_check_passes_and_shows_its_warnings(
    tmp_path: Path, active: bool
) -> None:
    """A re-run of install.sh is an upgrade: the running agent must be restarted, or the old code keeps running over
    the replaced files (the review found `systemctl start` said for a running unit, a no-op)."""
    result = run_start_step(tmp_path, active=active, check_rc=0, check_out=f"{CAMERA_WARNING}\nOK\n")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "calls.log").read_text() == "restart seal-agent.service\n"
    assert ("seal-agent restarted" if active else "seal-agent started") in result.stdout
    assert f"check-config warns:\n  {CAMERA_WARNING}\n" in result.stdout
    (tmp_path / "quiet").mkdir()
    quiet = run_start_step(tmp_path / "quiet", active=active, check_rc=0, check_out="OK\n")
    assert "warns" not in quiet.stdout and (tmp_path / "quiet" / "calls.log").exists()


@pytest.mark.parametrize("active", [True, False], ids=["upgrade", "first-install"])
def test_install_says_why_it_did_not_restart_and_what_to_run(tmp_path: Path, active: bool) -> None:
    result = run_start_step(tmp_path, active=active, check_rc=2, check_out=INVALID + "\n")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "calls.log").exists()  # neither started nor restarted
    said = result.stdout + result.stderr
    assert ("NOT restarted" in result.stderr) == active
    assert "sudo systemctl restart seal-agent" in said
    assert "  mqtt.password_file: empty" in result.stdout  # check-config's own words, not thrown away
