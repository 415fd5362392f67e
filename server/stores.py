"""The server's two content stores — snapshots and removal proofs — built from ``[storage]``: directories
(``snapshot_dir``, ``[removal] proof_dir``) or one S3-compatible bucket (keys ``<key_prefix>snapshots/…`` and
``<key_prefix>removal-proofs/…``). Built once per process by whoever composes it (the app, an ingest worker, the
export command); :meth:`Stores.check` is what ``seal-server run`` and ``seal-server ingest`` do before they start."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from server.config import Settings, read_secret_file
from server.config_storage import S3_SECRET_ENV, StorageSettings
from server.core.blobs import ObjectBackend
from server.core.files import DirectoryObjects, make_store_root
from server.core.metrics import IngestMetrics
from server.errors import ConfigError, ContentStoreError
from server.evidence.snapshot_files import SnapshotStore
from server.removal.proofs import ProofStore


@dataclass(frozen=True)
class Stores:
    snapshots: SnapshotStore
    proofs: ProofStore

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        on_mismatch: Callable[[str], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Stores:
        """The stores ``settings`` name; :class:`ConfigError` if the S3 secret cannot be read. ``on_mismatch`` is
        told (with the store's kind) of every object found holding other bytes than its name promises."""
        storage = settings.storage
        snapshots: ObjectBackend
        proofs: ObjectBackend
        if storage.backend == "s3":
            from server.core.s3_objects import S3Objects, make_client  # boto3 only where a bucket is used

            assert storage.bucket is not None  # (the settings' validator)
            client = make_client(storage, s3_secret(storage, os.environ if env is None else env))
            pause = storage.pause_after_failure_s
            snapshots = S3Objects(
                client, storage.bucket, f"{storage.key_prefix}snapshots/", pause_after_failure_s=pause
            )
            proofs = S3Objects(
                client, storage.bucket, f"{storage.key_prefix}removal-proofs/", pause_after_failure_s=pause
            )
        else:
            snapshots, proofs = DirectoryObjects(settings.snapshot_dir), DirectoryObjects(settings.proof_dir)
        return cls(SnapshotStore(snapshots, on_mismatch=on_mismatch), ProofStore(proofs, on_mismatch=on_mismatch))

    def check(self) -> None:
        """Raise :class:`ConfigError` (in Chinese and English) unless both stores can be written and read now (a
        directory must exist: it is never made here, see :func:`make_store_roots`)."""
        for store in (self.snapshots, self.proofs):
            try:
                store.backend.check()
            except ContentStoreError as exc:
                raise ConfigError(
                    f"无法使用证据存储（快照与解封证明）：{exc}。"
                    "目录存储：检查磁盘是否已挂载、目录是否存在（由 seal-server init 或 init-db 创建）且可读写；"
                    "S3 存储：检查 [storage] 的 endpoint_url、bucket、访问密钥与网络。\n"
                    f"The evidence store (snapshots and removal proofs) cannot be used: {exc}. A directory: check "
                    "that its disk is mounted and the directory exists (seal-server init or init-db makes it) and can "
                    "be read and written. A bucket: check [storage] endpoint_url, bucket, the access key and the "
                    "network."
                ) from None

    def remove_leftovers(self, metrics: IngestMetrics | None = None) -> None:
        """At the start of a process that writes in the stores (``seal-server run``, each ingest worker): remove the
        temporary files that writes cut short by a crash left in their directories, old enough that no writer of
        another process sharing them still writes them (:meth:`DirectoryObjects.remove_leftovers`), and count them.
        A bucket has none: an object is put whole or not at all."""
        for store in (self.snapshots, self.proofs):
            if isinstance(store.backend, DirectoryObjects):
                files, size = store.backend.remove_leftovers()
                if metrics is not None:
                    metrics.count_leftovers_removed(store.kind, files, size)


def make_store_roots(settings: Settings) -> None:
    """Make the directories of the stores (``snapshot_dir`` and ``proof_dir``) if missing: at setup (``seal-server
    init``) alone, never by a write, so that a store whose disk is not mounted fails instead of filling the root
    filesystem. Nothing with a bucket."""
    if settings.storage.backend != "s3":
        for directory in (settings.snapshot_dir, settings.proof_dir):
            make_store_root(directory)


def s3_secret(storage: StorageSettings, env: Mapping[str, str]) -> str:
    """The S3 secret access key: the first line of ``secret_access_key_file``, else ``$SEAL_S3_SECRET_ACCESS_KEY``;
    :class:`ConfigError` if neither gives one (there is no default)."""
    if storage.secret_access_key_file is not None:
        return read_secret_file(storage.secret_access_key_file, what="S3 secret access key")
    secret = env.get(S3_SECRET_ENV, "").strip()
    if not secret:
        raise ConfigError(
            f'[storage] backend = "s3" 需要访问密钥：请设置 secret_access_key_file 或环境变量 {S3_SECRET_ENV}。\n'
            f'[storage] backend = "s3" needs the secret access key: set secret_access_key_file or the environment '
            f"variable {S3_SECRET_ENV}."
        )
    return secret
