"""A seal's public key is its own: no other seal's, none of the court's.

Evidence is attributed to a seal because it verifies with the key the seal was registered with. Two seals
registered with one key (devices cloned from one SD-card image after ``install.sh`` made its key) cannot be told
apart: what either signs verifies as the other's. A court key registered as a seal's would let the court, which
holds its private half, sign that "seal's" evidence itself. Both are refused on every path that stores a seal's key
(:mod:`server.seals.registry`); the unique index on ``seals.public_key`` (migration 0021) decides between two
registrations of one key at once. Keys are stored in their one canonical spelling (standard base64 of the raw 32
bytes: :func:`public_key_b64_normalised`), so equal texts are equal keys.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import cast

from sqlalchemy import Engine, Index, Table, func, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from seal_protocol.errors import SignatureError
from seal_protocol.signing import load_signing_key, verify_key_from_b64
from server.config import Settings
from server.errors import AlreadyExists, Conflict
from server.seals.models import Seal

logger = logging.getLogger(__name__)

#: The court's own public keys (the raw 32 bytes) and what each is, in Chinese and in English.
CourtKeys = Mapping[bytes, tuple[str, str]]

NO_COURT_KEYS: CourtKeys = MappingProxyType({})


def public_key_b64_normalised(text: str) -> str:
    """The canonical base64 form of an Ed25519 public key; raise ``SignatureError`` if it is not one."""
    return base64.b64encode(bytes(verify_key_from_b64(text))).decode("ascii")


def court_public_keys(settings: Settings) -> CourtKeys:
    """The public keys of the court's own keys that are configured: the command key (``[commands]
    signing_key_file``), the evidence log's (``[evidence] log_key_file``), the notice key (``[notices] key_file``)
    and the retired notice keys (``[notices] retired_public_keys``). A key file not made yet has no key to compare
    (the log's is made on first use); one that cannot be read is skipped with a warning."""
    files = (
        (settings.commands.signing_key_file, ("法院指令签名密钥", "the court's command-signing key")),
        (settings.evidence.log_key_file, ("证据日志（检查点）签名密钥", "the evidence log's (checkpoint) signing key")),
        (settings.notices.key_file, ("公告签名密钥", "the notice signing key")),
    )
    keys: dict[bytes, tuple[str, str]] = {}
    for text in settings.notices.retired_public_keys:
        keys[bytes(verify_key_from_b64(text))] = ("已停用的公告签名密钥", "a retired notice signing key")
    for path, name in files:
        if (raw := _public_half(path)) is not None:
            keys[raw] = name
    return MappingProxyType(keys)


def _public_half(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return bytes(load_signing_key(path).verify_key)
    except FileNotFoundError:
        return None
    except (OSError, SignatureError, binascii.Error, ValueError) as exc:
        logger.warning("cannot read the court key %s to compare seals' keys with it: %s", path, exc)
        return None


def check_key_free(session: Session, *, device_id: str, key: str, court_keys: CourtKeys) -> None:
    """Refuse ``key`` (canonical base64) for ``device_id`` if it is one of the court's keys (:class:`Conflict`) or
    registered for another seal (:class:`AlreadyExists`); both answer 409 on the API, and the CLI exits 1."""
    name = court_keys.get(base64.b64decode(key))
    if name is not None:
        raise Conflict(
            f"此公钥是{name[0]}，不能登记为封条 {device_id} 的公钥：法院持有其私钥，便能冒充该封条签名。"
            "请使用封条设备上生成的公钥。 / "
            f"this public key is {name[1]}: it cannot be registered as seal {device_id!r}'s key (the court holds "
            "its private key, and could sign as the seal); use the public key the seal's device made"
        )
    query = select(Seal.device_id).where(Seal.public_key == key, Seal.device_id != device_id).limit(1)
    other = session.scalar(query)
    if other is not None:
        raise AlreadyExists(_taken(device_id, other))


def store_key(session: Session, seal: Seal, key: str) -> None:
    """Give ``seal`` (new, or registered) ``key`` and write it: of two registrations of one key at once, the unique
    index lets one through and the other is refused as :func:`check_key_free` refuses it."""
    try:
        with session.begin_nested():
            seal.public_key = key
            session.add(seal)
            session.flush()
    except IntegrityError:
        other = session.scalar(select(Seal.device_id).where(Seal.public_key == key).limit(1))
        if other is not None and other != seal.device_id:
            raise AlreadyExists(_taken(seal.device_id, other)) from None
        raise AlreadyExists(
            f"封条 {seal.device_id} 刚被另一登记占用，请刷新后再试。 / "
            f"seal {seal.device_id!r} was registered meanwhile; look again"
        ) from None


def _taken(device_id: str, other: str) -> str:
    return (
        f"此公钥已登记给封条 {other}，不能再登记给封条 {device_id}：每个封条须有自己的密钥。"
        "由同一 SD 卡镜像克隆的设备共用一个密钥，请在该设备上重新生成密钥后再登记。 / "
        f"this public key is registered for seal {other!r} already and cannot be seal {device_id!r}'s too: each "
        "seal needs a key of its own (devices cloned from one SD-card image share one: make a new key on this device "
        "and register that)"
    )


#: The unique index on the seals' public keys (migration 0021), left out where seals already shared a key.
KEY_INDEX = "ix_seals_public_key"


def complete_key_index(engine: Engine) -> None:
    """Create the unique index on the seals' public keys where migration 0021 left it out (seals then shared a key)
    once no two seals share one any more — at each start, after the migrations; while some still do, say which,
    each start (the migration said it once). Before, the index was never created later: two registrations of one key
    at once stayed possible for good on such a court."""
    with engine.begin() as connection:
        if any(index["name"] == KEY_INDEX for index in inspect(connection).get_indexes("seals")):
            return
        shared = connection.execute(
            select(Seal.public_key, func.count()).group_by(Seal.public_key).having(func.count() > 1)
        ).all()
        if shared:
            logger.warning(
                "仍有 %d 组封条共用公钥，公钥唯一索引 %s 仍未建立（见 seal-server seal list）。 / %d group(s) of seals "
                "still share a public key: the unique index %s is still not created (see seal-server seal list)",
                len(shared),
                KEY_INDEX,
                len(shared),
                KEY_INDEX,
            )
            return
        Index(KEY_INDEX, cast(Table, Seal.__table__).c.public_key, unique=True).create(connection, checkfirst=True)
    logger.info("no two seals share a public key any more: the unique index %s is created", KEY_INDEX)
