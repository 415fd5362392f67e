"""Each seal's public key is its own: a unique index on ``seals.public_key``, so that of two registrations of one key
at once only one is stored (the registrations refuse a key that is another seal's or the court's:
server.seals.seal_keys). Keys are compared in their one canonical spelling (standard base64 of the raw 32 bytes), which
every registration has stored; a row stored otherwise is rewritten in it first.

A court whose seals already share a key (registered before that was refused: devices cloned from one SD-card image)
keeps running: the index is not created there, and a warning names the seals sharing each key and what to do. Refusing
to migrate would stop the server (it migrates at start) with no way out but editing the database by hand: a seal whose
events the court stores cannot change its key (server.seals.registry.register_seal). Every new registration of a shared
key is refused all the same; only the race of two at once is left open there.

Revision ID: 4c8e2a6f1d37
Revises: 7b3e9d5a1f82
Create Date: 2026-12-07 10:00:00.000000
"""

import base64
import binascii
import logging
from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c8e2a6f1d37"
down_revision: str | None = "7b3e9d5a1f82"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("server.migrations.seal_keys")

INDEX = "ix_seals_public_key"
_SEALS = sa.table("seals", sa.column("id", sa.BigInteger), sa.column("device_id"), sa.column("public_key"))


def upgrade() -> None:
    bind = op.get_bind()
    sharing: defaultdict[str, list[str]] = defaultdict(list)
    for row_id, device_id, text in bind.execute(sa.select(_SEALS.c.id, _SEALS.c.device_id, _SEALS.c.public_key)):
        key = _canonical(text)
        if key != text:
            bind.execute(sa.update(_SEALS).where(_SEALS.c.id == row_id).values(public_key=key))
        sharing[key].append(device_id)
    shared = [sorted(device_ids) for device_ids in sharing.values() if len(device_ids) > 1]
    if shared:
        groups = "; ".join(", ".join(device_ids) for device_ids in sorted(shared))
        logger.warning(
            "封条共用公钥：%s。它们的证据无法区分是哪台设备签名的（多为由同一 SD 卡镜像克隆的设备）。"
            "请为每台克隆的设备重新生成密钥，并以新的设备编号登记（尚无事件的封条可用 seal add --replace-key "
            "换上新密钥），再解除旧封条的绑定。本法院不建立公钥唯一索引 %s（登记仍拒绝任何新的共用公钥）。 / "
            "seals sharing a public key: %s. Their evidence cannot tell which device signed it (devices cloned from "
            "one SD-card image, most likely). Make each cloned device a new key and register it under a new device id "
            "(a seal with no stored events may take it with seal add --replace-key), then unbind the old seal. The "
            "unique index %s on the seals' public keys is not created on this court (registrations still refuse any "
            "further sharing of a key)",
            groups,
            INDEX,
            groups,
            INDEX,
        )
        return
    op.create_index(INDEX, "seals", ["public_key"], unique=True)


def downgrade() -> None:
    if any(index["name"] == INDEX for index in sa.inspect(op.get_bind()).get_indexes("seals")):
        op.drop_index(INDEX, table_name="seals")


def _canonical(text: str) -> str:
    """``text`` in the one spelling of its key, or as it is if it is no key (nothing to compare it as)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return text
    return base64.b64encode(raw).decode("ascii") if len(raw) == 32 else text
