"""A migration, once committed, keeps what its upgrade does: a database stamped at its revision never runs what is
added to it later. Migration 0014 was edited so (its unique rule on ``snapshots``): courts that had run its first
version kept the old rule, mended by 0032. A change goes into a new migration.

For each migration, what its ``upgrade()`` does — the function and the module's functions, classes and names it
uses, transitively; without docstrings, comments, formatting or imports (compared as ``ast.unparse``) — is compared
with the file's first version in git history. A difference fails unless the file is listed in :data:`ACCEPTED`, and
then it is compared with the version named there: a further edit fails again. ``downgrade()`` is not compared (a
database downgraded runs the downgrade of the code at hand). Skipped without git or its history (a tarball, a shallow
clone)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "server" / "migrations" / "versions"

#: The known edits of an upgrade after its file's first version: the version they are now compared with, and why
#: the edit is harmless. Each was checked against the first version's diff.
ACCEPTED: dict[str, tuple[str, str]] = {
    # The server's layout (6477f46): UTCDateTime moved from server.models to server.core.base, the same type.
    "0001_initial_schema.py": ("6477f46e355a688ed090517e155d0330b647b886", "UTCDateTime's module renamed"),
    "0002_commands.py": ("6477f46e355a688ed090517e155d0330b647b886", "UTCDateTime's module renamed"),
    "0005_quarantine_copies.py": ("6477f46e355a688ed090517e155d0330b647b886", "UTCDateTime's module renamed"),
    # _backfill's frontier given a type annotation for mypy; the same statements. Made on its branch before main.
    "0006_merkle_log.py": ("2235690443332b1105aa6b8c650d6f3f71e627d3", "a type annotation"),
    # Made on the audit branch before it was merged into main (dae56a3): no court ran the earlier versions.
    "0012_audit_in_the_log.py": ("3358671f83bfd5d2ecb1dfe928fea90b4527c174", "edited before it reached main"),
    # Made on the export branch before it was merged into main (1f1fcf2): no court ran the earlier versions.
    "0013_evidence_exports.py": ("beb19f6231dc3ba8e1af4b81a61d43bdc66edaf2", "edited before it reached main"),
    # The defect this test guards against: the new unique rule on snapshots (sha256, device_id, case_no) added after
    # the first version had reached main (9e74302). Databases that ran the first version get it from 0032.
    "0014_snapshot_names.py": ("8f06d4788eb5648e53bbd99b86227c645949c459", "mended by 0032"),
    # 1bbab73 (before main): a plain DateTime bound instead of a UTCDateTime made per run, the same value bound.
    # 670e5ce (after main): a stamp past now + skew is set to that bound instead of status_changed_at (<= now); both
    # leave every stored stamp within the bound the ingest keeps, and the seal's next status stands either way.
    "0016_status_stamps_bounded.py": ("670e5ce61df1865358b521958b8cb0d14c897db8", "either bound is within the rule"),
}


def _without_docstrings(node: ast.stmt) -> str:
    node = ast.parse(ast.unparse(node)).body[0]  # a copy
    for inner in ast.walk(node):
        if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if ast.get_docstring(inner, clean=False) is not None:
                inner.body = inner.body[1:] or [ast.Pass()]
    return ast.unparse(node)


def upgrade_path(source: str) -> dict[str, str]:
    """``upgrade`` and the module-level definitions it uses, transitively: each name's statement, normalised. Imported
    names are left out (their code is not the migration's)."""
    defined: dict[str, ast.stmt] = {}
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined[statement.name] = statement
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                defined.update((n.id, statement) for n in ast.walk(target) if isinstance(n, ast.Name))
    found: dict[str, str] = {}
    todo = ["upgrade"]
    while todo:
        name = todo.pop()
        if name in found or name not in defined:
            continue
        found[name] = _without_docstrings(defined[name])
        todo.extend(n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name))
    return found


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def history() -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the migrations' history cannot be read")
    shallow = _git("rev-parse", "--is-shallow-repository")
    if shallow.returncode != 0:
        pytest.skip("not a git checkout (a tarball?): the migrations' history cannot be read")
    if shallow.stdout.strip() != "false":
        pytest.skip("a shallow clone: the migrations' first versions are not in it (git fetch --unshallow)")


def _first_version(path: Path) -> str | None:
    """The commit that first added ``path`` under this name (on any branch, a merge that renamed it included); None
    while it is not committed."""
    relative = path.relative_to(ROOT).as_posix()
    log = _git("log", "-m", "--no-renames", "--diff-filter=A", "--topo-order", "--format=%H", "--", relative)
    assert log.returncode == 0, log.stderr
    commits = log.stdout.split()
    return commits[-1] if commits else None


def _source_at(commit: str, path: Path) -> str:
    shown = _git("show", f"{commit}:{path.relative_to(ROOT).as_posix()}")
    assert shown.returncode == 0, f"{commit}: {shown.stderr.strip()} (history rewritten? update ACCEPTED)"
    return shown.stdout


def test_the_accepted_edits_name_existing_migrations() -> None:
    assert set(ACCEPTED) <= {path.name for path in VERSIONS.glob("*.py")}


@pytest.mark.parametrize("path", sorted(VERSIONS.glob("0*.py")), ids=lambda path: path.name)
def test_a_committed_upgrade_is_not_edited(history: None, path: Path) -> None:
    first = _first_version(path)
    if first is None:
        return  # not committed yet: nothing to hold it to
    baseline = ACCEPTED[path.name][0] if path.name in ACCEPTED else first
    was, now = upgrade_path(_source_at(baseline, path)), upgrade_path(path.read_text(encoding="utf-8"))
    changed = sorted(name for name in was.keys() | now.keys() if was.get(name) != now.get(name))
    assert not changed, (
        f"{path.name}: what its upgrade does changed since {baseline[:12]} ({', '.join(changed)}). A database stamped "
        "at its revision never runs the change: put it in a new migration (one that checks the schema where "
        "databases differ, like 0032), or, if it is harmless, list the file in ACCEPTED with the reason"
    )
