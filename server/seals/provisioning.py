"""MQTT accounts of seals and of the court server, and the Mosquitto password and ACL files made from them.

The database holds only Mosquitto-format password hashes; a seal's password is shown once, when it is created or
rotated, to be put into the seal's ``mqtt-password`` file. The broker's files are regenerated from the database as a
whole, so they never drift from it. Each seal's username is its device id, which the ACL's ``%u`` relies on.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from seal_protocol.topics import validate_device_id
from server.audit.service import Actor, record_audit
from server.config import BrokerFilesSettings, read_password
from server.core.db import READ_ONLY
from server.core.unique import unique_or
from server.errors import AlreadyExists, BrokerUnavailable, ConfigError, Invalid, NotFound
from server.seals.broker_files import (
    SERVER_USERNAME,
    acl_text,
    files_locked,
    mosquitto_password_hash,
    password_file_text,
    write_private_file,
)
from server.seals.broker_process import NotOurBroker, reload_broker
from server.seals.models import AccountKind, MqttAccount, Seal

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewCredentials:
    username: str
    password: str


def new_password() -> str:
    return secrets.token_urlsafe(24)


#: A password chosen outside (the server's, which ``seal-server init`` writes with :func:`new_password`: 32 characters)
#: is adopted only if at least this long: 32 characters of the URL-safe alphabet that ``init`` uses are 192 bits, and
#: the broker's hashes are not stretched (:data:`~server.seals.broker_files.PBKDF2_ITERATIONS`), so a shorter, perhaps
#: human-chosen password would be the weak point of a stolen password file.
MIN_ADOPTED_PASSWORD_LENGTH = 32


def check_adopted_password(password: str, *, username: str, source: Path | None = None) -> None:
    """Refuse a password chosen outside, shorter than :data:`MIN_ADOPTED_PASSWORD_LENGTH`: :class:`ConfigError`
    naming ``source``, the file it was read from, else :class:`Invalid`."""
    if len(password) >= MIN_ADOPTED_PASSWORD_LENGTH:
        return
    short = (len(password), MIN_ADOPTED_PASSWORD_LENGTH)
    if source is None:
        raise Invalid(
            f"MQTT 账号 {username} 的密码太短（{short[0]} 个字符，至少 {short[1]} 个）。 / "
            f"The MQTT password of {username!r} is too short ({short[0]} characters, at least {short[1]})."
        )
    raise ConfigError(
        f"{source}：MQTT 账号 {username} 的密码太短（{short[0]} 个字符，至少 {short[1]} 个）：换成更长的随机密码，"
        "或删除该文件，再次运行本命令即生成随机密码写入其中。 / "
        f"{source}: the MQTT password of {username!r} is too short ({short[0]} characters, at least {short[1]}): "
        "put a longer random one there, or delete the file and this command writes a random one into it."
    )


def check_seal_name(session: Session, device_id: str, *, reserved: Collection[str] = ()) -> None:
    """Refuse (:class:`AlreadyExists`, 409) a seal's device id that is, or may become, the name of a broker account
    that is not a seal's: the court server's (:data:`SERVER_USERNAME`, and ``reserved``: the configured ``[mqtt]
    username``), or any account of another kind. A seal's account is its device id, so a seal named so would be
    handed that account's password (and its rights in the ACL)."""
    account = session.get(MqttAccount, device_id)
    taken = account is not None and account.kind != AccountKind.SEAL.value
    if device_id == SERVER_USERNAME or device_id in reserved or taken:
        raise AlreadyExists(
            f"设备编号 {device_id} 已保留：这是法院服务器等非封条的 MQTT 账号名，不能用作封条编号。 / "
            f"The device id {device_id!r} is reserved: it names a broker account that is not a seal's (the court "
            "server's), and no seal may have it."
        )


def create_account(
    session: Session, *, username: str, kind: AccountKind, password: str | None = None
) -> NewCredentials:
    """Create a broker account with ``password`` or, by default, a random one, returned once; refuse an existing
    username, and a seal's under a name that is not a seal's to take (:func:`check_seal_name`)."""
    if kind is AccountKind.SEAL:
        validate_device_id(username)
        check_seal_name(session, username)

    def exists() -> AlreadyExists:
        return AlreadyExists(f"MQTT account {username!r} exists; rotate its password instead")

    if session.get(MqttAccount, username) is not None:
        raise exists()
    if password is None:
        password = new_password()
    else:
        check_adopted_password(password, username=username)
    account = MqttAccount(
        username=username,
        kind=kind.value,
        password_hash=mosquitto_password_hash(password),
        created_at=datetime.now(UTC),
    )
    with unique_or(session, exists):  # the same account created at once: one goes through
        session.add(account)
        session.flush()
    logger.info("MQTT account %s (%s) created", username, kind.value)
    return NewCredentials(username, password)


def rotate_password(session: Session, *, username: str) -> NewCredentials:
    account = session.get(MqttAccount, username)
    if account is None:
        raise NotFound(f"no MQTT account {username!r}")
    password = new_password()
    account.password_hash = mosquitto_password_hash(password)
    account.rotated_at = datetime.now(UTC)
    account.disabled = False
    logger.info("MQTT account %s: password rotated", username)
    return NewCredentials(username, password)


def disable_account(session: Session, *, username: str) -> None:
    account = session.get(MqttAccount, username)
    if account is None:
        raise NotFound(f"no MQTT account {username!r}")
    account.disabled = True
    logger.info("MQTT account %s disabled", username)


def server_account(session: Session, *, actor: Actor | None, password_file: Path) -> tuple[NewCredentials, bool]:
    """Create the court server's account with the password in ``password_file`` (``seal-server init`` writes it),
    or a random one if that file is absent; give an existing account a new random password. Returns the
    credentials and whether they are the file's (then the file needs no rewriting)."""
    adopted = False
    if session.get(MqttAccount, SERVER_USERNAME) is None:
        password = read_password(password_file) if password_file.exists() else None
        if password is not None:
            check_adopted_password(password, username=SERVER_USERNAME, source=password_file)
        adopted = password is not None
        credentials = create_account(session, username=SERVER_USERNAME, kind=AccountKind.SERVER, password=password)
    else:
        credentials = rotate_password(session, username=SERVER_USERNAME)
    record_audit(session, actor=actor, action="mqtt.server_account", target=SERVER_USERNAME)
    return credentials, adopted


def seal_account(session: Session, *, actor: Actor | None, device_id: str, rotate: bool) -> NewCredentials | None:
    """Give a registered seal its MQTT account, or a new password when ``rotate``; None if nothing changed. Only a
    seal's own account (kind ``seal``) is adopted or rotated: any other under its name is refused
    (:func:`check_seal_name`), never handed out."""
    check_seal_name(session, device_id)
    credentials: NewCredentials | None = None
    if rotate:
        credentials = rotate_password(session, username=device_id)  # NotFound for a seal without an account
    elif session.get(MqttAccount, device_id) is None:
        credentials = create_account(session, username=device_id, kind=AccountKind.SEAL)
    if credentials is not None:
        action = "mqtt.rotate_password" if rotate else "mqtt.create_account"
        case_no = session.scalar(select(Seal.case_no).where(Seal.device_id == device_id))
        record_audit(session, actor=actor, action=action, target=device_id, case_no=case_no)
    return credentials


def disable_seal_account(
    session: Session, *, actor: Actor | None, device_id: str, reserved: Collection[str] = ()
) -> bool:
    """Disable a seal's MQTT account: the broker refuses its connections once its files are rewritten and reloaded.
    Returns False if it was disabled already (nothing recorded). Only a seal's own account (:func:`check_seal_name`,
    ``reserved`` as there); :class:`NotFound` for a seal without one. A new password (:func:`rotate_password`,
    ``seal rotate-password``) enables it again: there is no enabling with the old one."""
    check_seal_name(session, device_id, reserved=reserved)
    account = session.get(MqttAccount, device_id)
    if account is None:
        raise NotFound(f"no MQTT account {device_id!r}")
    if account.disabled:
        return False
    disable_account(session, username=device_id)
    case_no = session.scalar(select(Seal.case_no).where(Seal.device_id == device_id))
    record_audit(session, actor=actor, action="mqtt.disable_account", target=device_id, case_no=case_no)
    return True


def write_broker_files(session: Session, *, password_file: Path, acl_file: Path) -> int:
    """Regenerate Mosquitto's password and ACL files from the accounts ``session`` sees; returns the number of
    active accounts. Holds the files' lock (:func:`files_locked`) meanwhile.

    Both are written atomically with mode 0640 so that a broker running as another user in the file's group can
    read them; send the broker SIGHUP (or ``systemctl reload mosquitto``) to apply them.
    """
    with files_locked(password_file):
        return _write_files(session, password_file=password_file, acl_file=acl_file)


def _write_files(session: Session, *, password_file: Path, acl_file: Path) -> int:
    query = select(MqttAccount.username, MqttAccount.password_hash).where(MqttAccount.disabled.is_(False))
    hashes: dict[str, str] = dict(session.execute(query).all())
    write_private_file(password_file, password_file_text(hashes), 0o640)
    write_private_file(acl_file, acl_text(SERVER_USERNAME), 0o640)
    logger.info("wrote %s (%s) and %s", password_file, _accounts(len(hashes)), acl_file)
    return len(hashes)


def apply_broker_files(session: Session, files: BrokerFilesSettings) -> str:
    """Rewrite the configured Mosquitto files from the accounts as committed and signal the broker; returns what
    was done, for the operator. Call it after the commit of the accounts' changes.

    Reading, writing and signalling happen under the files' lock (:func:`files_locked`), and the accounts are read
    after it is granted, in a transaction of their own on ``session``'s engine (not ``session``'s, whose snapshot
    or loaded rows may predate the lock): of two callers at once, the later one writes what both committed, so an
    older reading never replaces a newer file (a rotated password working again)."""
    if files.password_file is None or files.acl_file is None:
        return "no [broker] password_file/acl_file configured: broker files not written"
    with files_locked(files.password_file):
        with Session(session.get_bind().engine.execution_options(**READ_ONLY)) as fresh:
            count = _write_files(fresh, password_file=files.password_file, acl_file=files.acl_file)
        return _signal(files, f"wrote {files.password_file} ({_accounts(count)}) and {files.acl_file}")


def _signal(files: BrokerFilesSettings, done: str) -> str:
    if files.pid_file is None:
        return done + "; reload the broker to apply them (systemctl reload mosquitto)"
    try:
        reloaded = reload_broker(files.pid_file)
    except BrokerUnavailable as exc:
        raise BrokerUnavailable(f"{done}, but the broker could not be signalled via {files.pid_file}: {exc}") from exc
    if isinstance(reloaded, NotOurBroker):
        return done + f"; no broker running ({reloaded.reason}): start it, the accounts are in the files"
    return done + f"; broker (pid {reloaded}) reloaded"


def _accounts(count: int) -> str:
    return f"{count} account" if count == 1 else f"{count} accounts"
