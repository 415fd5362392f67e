"""Whether this process may use the seal's state directory: a simulated seal's or a real one's, and the files in it
readable and writable by the user the agent runs as.

**Simulated or real, never both.** ``seal-agent simulate`` drives mock pins: the presences and lid openings it
signs never happened. Signed with a real seal's enrolled key into its chain, they would reach the court as that
seal's evidence, and a chain cannot lose an event. So a state directory is claimed once, when its key is made
(:func:`claim_state_dir`): ``simulate`` (or ``keygen --simulated``) marks a new, empty one with
:data:`SIMULATED_MARK` before it makes the key, and refuses one that already holds a key, a chain record or an
outbox without the mark (a real seal's: made by ``keygen`` or ``run``); ``run`` and ``keygen`` refuse a marked one.
Every event a simulated seal signs says ``"simulated": true`` besides (docs/protocol.md).

**The service's files.** The systemd unit runs the agent as ``seal``. One start as root (``sudo seal-agent …``) left
root-owned 0600 files in its state directory and the service failed at every start after it. As root, ``run``,
``simulate`` and ``keygen`` refuse a state directory another user owns (:func:`root_refusal`); ``check-config`` and
every start name each state file the current user cannot read or write (:func:`state_file_problems`).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from pathlib import Path

from seal_agent.config import AgentConfig
from seal_agent.config_checks import SERVICE_USER, UNIT_WRITABLE
from seal_agent.connection_stamps import STAMP_FILE
from seal_agent.errors import SealStateError, StateReadOnly, read_only
from seal_agent.journal.chain import CHAIN_RECORD
from seal_protocol.signing import write_durably

#: The file that marks a state directory as a simulated seal's.
SIMULATED_MARK = "SIMULATED"
_MARK_TEXT = (
    "本目录由 seal-agent simulate 创建：其中的事件来自模拟引脚，并非真实发生；"
    "真实封条（seal-agent run）不会使用本目录。\n"
    "This state directory was made by `seal-agent simulate`: its events come from mock pins and never happened; a "
    "real seal (`seal-agent run`) refuses it.\n"
)
#: Snapshot files named one by one at most; the rest are counted.
_NAMED_SNAPSHOTS = 3


def is_simulated(state_dir: Path) -> bool:
    """Whether ``state_dir`` is a simulated seal's (holds :data:`SIMULATED_MARK`)."""
    return (state_dir / SIMULATED_MARK).exists()


def claim_state_dir(config: AgentConfig, *, simulated: bool) -> None:
    """Check, before the key is read or made, that ``config``'s state directory is a simulated seal's (``simulated``)
    or a real one's; mark a new one as simulated. Raises :class:`~seal_agent.errors.SealStateError` otherwise."""
    state_dir = config.state_dir
    try:
        marked = is_simulated(state_dir)
        found = [path.name for path in _chain_files(config) if path.exists()]
    except OSError as exc:
        raise SealStateError(f"cannot read state_dir {state_dir}: {exc}") from exc
    if marked:
        if not simulated:
            raise SealStateError(simulated_refusal(config))
        return
    if not simulated:
        return
    if found:
        raise SealStateError(_real_seal_refusal(state_dir, found))
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        write_durably(state_dir / SIMULATED_MARK, _MARK_TEXT.encode("utf-8"))
    except OSError as exc:
        raise SealStateError(f"cannot mark {state_dir} as a simulated seal's ({exc}): simulate does not start") from exc


#: After ``check-config``'s refusal of a simulated seal's state_dir (checked for ``run``): it is right for ``simulate``.
SIMULATED_HINT = (
    "这是模拟封条的 state_dir，供 seal-agent simulate 使用：请用 seal-agent check-config --simulate --config FILE "
    "检查。 / This is a simulated seal's state_dir, right for `seal-agent simulate` (which this check is not for: it "
    "checks for `run`): check it with `seal-agent check-config --simulate --config FILE`."
)


def check_config_state_problems(config: AgentConfig, *, simulate: bool) -> list[str]:
    """``check-config``'s word on the state directory, for ``run`` or (``simulate``) for ``simulate``: each refuses
    the other's (:func:`claim_state_dir`)."""
    if simulate:
        refusal = simulate_refusal(config)
        return [] if refusal is None else [f"state_dir: {refusal}"]
    if is_simulated(config.state_dir):
        return [f"state_dir: {simulated_refusal(config)} {SIMULATED_HINT}"]
    return []


def simulate_refusal(config: AgentConfig) -> str | None:
    """Why ``simulate`` would refuse ``config``'s state directory (a real seal's), checked without marking it."""
    state_dir = config.state_dir
    try:
        if is_simulated(state_dir):
            return None
        found = [path.name for path in _chain_files(config) if path.exists()]
    except OSError as exc:
        return f"cannot read state_dir {state_dir}: {exc}"
    return _real_seal_refusal(state_dir, found) if found else None


def _real_seal_refusal(state_dir: Path, found: list[str]) -> str:
    return (
        f"state_dir {state_dir} 属于一台真实封条（其中已有 {', '.join(found)}，由 seal-agent keygen 或 run 创建）："
        f"simulate 在模拟引脚上产生的入侵、开盖事件会以它的密钥签名、写入它的事件链，"
        f"作为真实事件送达法院，且无法删除。"
        f"请另写一份临时配置，state_dir 指向一个新的空目录（例如 /tmp/seal-try/state），再运行 simulate。"
        f" / {state_dir} belongs to a real seal (it holds {', '.join(found)}, made by `seal-agent keygen` or "
        f"`run`): the intrusions and lid openings simulate makes on mock pins would be signed with its key into "
        f"its chain and reach the court as real events, and could never be removed. Simulate with a throw-away "
        f"configuration whose state_dir is a new, empty directory (e.g. /tmp/seal-try/state)."
    )


def simulated_refusal(config: AgentConfig) -> str:
    """Why ``run`` and ``keygen`` refuse a simulated seal's state directory, and what to do."""
    state_dir = config.state_dir
    return (
        f"state_dir {state_dir} 由 seal-agent simulate 或 keygen --simulated 创建"
        f"（标记文件 {state_dir / SIMULATED_MARK}）：其中的事件来自"
        f"模拟引脚，真实封条不得接续这条事件链，也不得使用其密钥。请为真实封条使用一个新的空 state_dir（再运行 "
        f"seal-agent keygen，把它打印的公钥交法院登记）。 / {state_dir} was made by `seal-agent simulate` or "
        f"`keygen --simulated` (marked by "
        f"{state_dir / SIMULATED_MARK}): its chain holds events made on mock pins, which a real seal must not "
        f"continue, nor sign with its key. Give the real seal a new, empty state_dir (then `seal-agent keygen`, and "
        f"enrol the key it prints at the court)."
    )


def _chain_files(config: AgentConfig) -> list[Path]:
    return [config.key_path, config.state_dir / CHAIN_RECORD, config.outbox_path]


def state_file_problems(config: AgentConfig) -> list[str]:
    """Each file of the state directory the agent opens that the current user cannot read (or write, for those it
    writes): the device key, ``chain.json``, the outbox with its ``-wal`` and ``-shm``, the connection stamp and the
    snapshot store (its folders and files). Each names the file, its owner and mode, and the ``chown`` that fixes it;
    a read-only filesystem is named instead (:class:`~seal_agent.errors.StateReadOnly`)."""
    state_dir = config.state_dir
    if not state_dir.is_dir() or not os.access(state_dir, os.X_OK):
        return []  # check_files says so
    if read_only(state_dir):  # no chown helps: the card failed (or was mounted so)
        return [f"state_dir: {StateReadOnly(state_dir, os.strerror(errno.EROFS))}"]
    outbox = config.outbox_path
    wanted = {
        config.key_path: os.R_OK,
        state_dir / CHAIN_RECORD: os.R_OK,
        state_dir / SIMULATED_MARK: os.R_OK,
        outbox: os.R_OK | os.W_OK,
        outbox.with_name(outbox.name + "-wal"): os.R_OK | os.W_OK,
        outbox.with_name(outbox.name + "-shm"): os.R_OK | os.W_OK,
        state_dir / STAMP_FILE: os.R_OK | os.W_OK,
        config.snapshot_dir: os.R_OK | os.W_OK | os.X_OK,
    }
    blocked = [path for path, mode in wanted.items() if path.exists() and not os.access(path, mode)]
    snapshots = _blocked_snapshots(config.snapshot_dir) if config.snapshot_dir not in blocked else []
    if not blocked and not snapshots:
        return []
    user, fix = _user(), f"sudo chown -R {_me()} {state_dir}"
    problems = []
    for path in blocked:
        zh, en = ("读写", "read and write") if wanted[path] & os.W_OK else ("读取", "read")
        problems.append(
            f"state_dir: 当前用户 {user} 无法{zh} {path}（{_owner_mode(path)}），封条程序将无法启动；请执行 {fix}"
            f" / the current user {user} cannot {en} {path} ({_owner_mode(path)}): the agent would fail to start; "
            f"fix: {fix}"
        )
    if snapshots:
        count, named = len(snapshots), ", ".join(str(path) for path in snapshots[:_NAMED_SNAPSHOTS])
        more = f" (+{count - _NAMED_SNAPSHOTS})" if count > _NAMED_SNAPSHOTS else ""
        problems.append(
            f"state_dir: 当前用户 {user} 无法使用快照目录中的 {count} 个文件或目录（{named}{more}），"
            f"这些快照无法保存或发送；请执行 {fix} / the current user {user} cannot use {count} file(s) or "
            f"folder(s) of the snapshot store ({named}{more}): their snapshots cannot be stored or sent; fix: {fix}"
        )
    return problems


def _blocked_snapshots(directory: Path) -> list[Path]:
    """The folders of the snapshot store the current user cannot read, write and enter, and its files it cannot
    read."""
    blocked: list[Path] = []
    for root, folders, files in os.walk(directory):
        for name in folders:
            if not os.access(Path(root, name), os.R_OK | os.W_OK | os.X_OK):
                blocked.append(Path(root, name))
        folders[:] = [name for name in folders if Path(root, name) not in blocked]
        blocked.extend(Path(root, name) for name in files if not os.access(Path(root, name), os.R_OK))
    return blocked


def root_refusal(config: AgentConfig, command: str) -> str | None:
    """Why ``command`` (``run``, ``simulate``, ``keygen``) must not run as root with this state directory, or None:
    it belongs to another user, or it is the unit's (:data:`~seal_agent.config_checks.UNIT_WRITABLE`) on a machine
    with the service's user. Root would leave files there (mode 0600) the service could no longer open."""
    if os.geteuid() != 0:
        return None
    state_dir = config.state_dir
    try:
        owner = state_dir.stat().st_uid
    except OSError:
        owner = 0
    if owner != 0:
        user = _name_of(owner)
    elif state_dir.resolve() == UNIT_WRITABLE and _exists(SERVICE_USER):
        user = SERVICE_USER
    else:
        return None
    return (
        f"seal-agent {command} 拒绝以 root 身份运行：state_dir {state_dir} 属于用户 {user}，root 在其中写下的文件"
        f"（权限 0600）会让以 {user} 运行的封条服务无法启动。请以该用户运行：sudo -u {user} seal-agent {command} … "
        f"/ seal-agent {command} refuses to run as root: state_dir {state_dir} belongs to the user {user}, and the "
        f"files root would write there (mode 0600) would stop the seal's service, which runs as {user}, from "
        f"starting. Run it as that user: sudo -u {user} seal-agent {command} …"
    )


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user() -> str:
    return _name_of(os.geteuid())


def _me() -> str:
    """``user:group`` of this process, for ``chown``."""
    try:
        group = grp.getgrgid(os.getegid()).gr_name
    except KeyError:
        group = str(os.getegid())
    return f"{_user()}:{group}"


def _owner_mode(path: Path) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        return f"{exc.strerror or exc}"
    return f"owner {_name_of(info.st_uid)}, mode {stat.S_IMODE(info.st_mode):04o}"
