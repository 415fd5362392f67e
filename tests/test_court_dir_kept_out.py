"""The court directory the README's "Run a court server" makes in the clone (``court/``: the court's keys, MQTT
passwords and database) is neither committed by ``git add -A`` nor copied to a seal by ``hardware/install.sh``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.agent.test_install_script import install_tree_step

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="no git, or not a git checkout (an archive)"
)
def test_git_ignores_the_readme_s_court_directory() -> None:
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "court/court-command.key"], check=False, timeout=30
    )
    assert ignored.returncode == 0
    kept = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", "server/setup/court_dir.py"], check=False)
    assert kept.returncode == 1  # only the top-level court/, not every path named so


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("rsync") is None, reason="install.sh's copy runs as root")
def test_install_sh_does_not_copy_the_court_directory(tmp_path: Path) -> None:
    src, prefix = tmp_path / "src", tmp_path / "opt" / "court-seal"
    (src / "court").mkdir(parents=True)
    (src / "court" / "court-command.key").write_text("secret\n")
    (src / "seal_agent").mkdir()
    (src / "seal_agent" / "court").mkdir()  # a package directory of that name is still copied
    (src / "seal_agent" / "court" / "x.py").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text('#!/bin/sh\nmkdir -p "$4/bin" && printf "#!/bin/sh\\n" > "$4/bin/python"\n')
    (bin_dir / "python3").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "SYSTEM_PYTHON": str(bin_dir / "python3"),  # Debian's /usr/bin/python3 in install.sh
        "SRC": str(src),
        "PREFIX": str(prefix),
        "CONF_DIR": str(tmp_path / "etc"),
        "STATE_DIR": str(tmp_path / "var"),
    }
    script = "set -euo pipefail\n" + install_tree_step()
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert not (prefix / "court").exists()
    assert (prefix / "seal_agent" / "court" / "x.py").exists()
