"""What the ingest keeps in memory between transactions about each seal: its parsed key and its chain head.

Nothing here is trusted without the database's word in the transaction that uses it:

- **Keys.** A message's signature is checked *before* the transaction begins (so the write lock is not held while
  Ed25519 runs) against the key the seal had at the last transaction. Inside the transaction the seal's row is read
  again (:class:`SealRow`, one compiled Core query per batch); if its key changed meanwhile — re-registration with
  ``replace_key``, a clerk's correction, in this process or any other — the message is verified again with the
  key now stored. So the cache saves the work, never the check.
- **Chain heads.** The hash (and ``prev_hash``) of a seal's event at ``max_seq``, so that the next event's link
  needs no read of the events table. A head is valid only while ``chain_state.max_seq`` (read locked in the
  transaction) still names it: events are immutable, so ``(device_id, seq)`` → hash never changes, but another
  worker may have stored a newer head. Heads are updated only after a commit (:meth:`IngestCache.committed`).
- **Bindings** are not cached: they are read, for one seal, only when an event names another case than the seal's
  current one (a seal draining its outbox after an unbinding), which is rare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from seal_protocol.signing import VerifyKey, verify_key_from_b64
from server.core.driver_sql import DriverSelect
from server.core.value_lists import one_of
from server.evidence.log import Frontier
from server.seals.models import Seal

#: Bounds of the caches: beyond them a cache starts again empty (a court has some thousands of seals).
KEY_LIMIT = 100_000
HEAD_LIMIT = 100_000

_SEALS = cast(Table, Seal.__table__)  # Core columns: the statement skips the ORM's per-execution work
_SEAL_ROWS = DriverSelect(
    select(
        *(
            _SEALS.c[name]
            for name in ("device_id", "public_key", "case_no", "status", "status_changed_at", "status_ts")
        ),
        *(_SEALS.c[name] for name in ("storage_fault", "storage_held", "storage_since")),
    ).where(one_of(_SEALS.c.device_id, "device_ids"))
)


@dataclass(frozen=True, slots=True)
class SealRow:
    """The columns of a seal the ingest's checks need, as stored when the transaction read them."""

    device_id: str
    public_key: str
    case_no: str | None
    status: str | None
    status_changed_at: datetime | None  # when the court received that status
    status_ts: datetime | None = None  # that status's own ts (its connection's stamp): orders a seal's statuses
    storage_fault: str | None = None  # the storage report of its last standing online status (unsigned)
    storage_held: int | None = None
    storage_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """A seal's stored event at ``seq`` (its ``max_seq``): the hash of its bytes and the hash it names as previous."""

    seq: int
    hash: str
    prev_hash: str | None


def read_seals(session: Session, device_ids: Iterable[str]) -> dict[str, SealRow]:
    """The rows of the registered seals among ``device_ids``."""
    wanted = sorted(set(device_ids))
    if not wanted:
        return {}
    return {row[0]: SealRow(*row) for row in _SEAL_ROWS.rows(session, {"device_ids": wanted})}


class IngestCache:
    """Parsed keys and chain heads of the seals one ingest worker has seen; see the module's docstring."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, VerifyKey]] = {}  # device_id -> (public key text, parsed)
        self._parsed: dict[str, VerifyKey] = {}  # public key text -> parsed
        self._heads: dict[str, Head] = {}
        #: The Merkle log's peaks after this worker's last committed append: a hint only. It names the peaks
        #: :func:`~server.evidence.log.append_leaves` reads with the log's size (one query); the nodes appended from
        #: are always the stored ones, and a cached peak that differs is logged. A failover or a restored backup can
        #: pass without any transaction failing (the pool's pre-ping replaces a dead connection unseen), so no cached
        #: hash is ever written from. Forgotten at any failure of an ingest transaction.
        self.frontier: Frontier | None = None

    def key_text(self, device_id: str) -> str | None:
        """The key (base64) the seal had at the last transaction that read it, if any."""
        known = self._keys.get(device_id)
        return None if known is None else known[0]

    def verify_key(self, public_key: str) -> VerifyKey:
        """``public_key`` (base64) parsed; raises ``SignatureError`` for a key that is none."""
        key = self._parsed.get(public_key)
        if key is None:
            key = verify_key_from_b64(public_key)
            if len(self._parsed) >= KEY_LIMIT:
                self._parsed.clear()
            self._parsed[public_key] = key
        return key

    def key_of(self, device_id: str) -> VerifyKey | None:
        known = self._keys.get(device_id)
        return None if known is None else known[1]

    def saw(self, seals: Mapping[str, SealRow]) -> None:
        """The seal rows a transaction read: their keys are the ones to try first next time."""
        if len(self._keys) + len(seals) > KEY_LIMIT:
            self._keys.clear()
        for seal in seals.values():
            known = self._keys.get(seal.device_id)
            if known is None or known[0] != seal.public_key:
                try:
                    self._keys[seal.device_id] = (seal.public_key, self.verify_key(seal.public_key))
                except ValueError:  # a stored key that is none: every message is verified (and refused) inside
                    self._keys.pop(seal.device_id, None)

    def head(self, device_id: str, max_seq: int) -> Head | None:
        """The seal's head if it is still the event at ``max_seq``."""
        head = self._heads.get(device_id)
        return head if head is not None and head.seq == max_seq else None

    def committed(self, heads: Mapping[str, Head], frontier: Frontier | None = None) -> None:
        """Heads (and the log's frontier, if it appended) of a transaction that committed."""
        if frontier is not None:
            self.frontier = frontier
        if len(self._heads) + len(heads) > HEAD_LIMIT:
            self._heads.clear()
        self._heads.update(heads)

    def forget(self, device_id: str) -> None:
        self._heads.pop(device_id, None)


def latest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a
