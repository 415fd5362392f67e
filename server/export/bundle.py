"""Writing a bundle: the zip members in the layout of ``docs/evidence.md``, each file's SHA-256 and size kept for the
manifest, then the manifest and its signed note by the log key. The zip goes to a temporary file beside the target
and is renamed over it only when complete (by the caller, after the export is recorded).

Each member is written in chunks (a JSON-lines file a batch of lines at a time), each counted against seal-verify's
size bounds before it is written (:mod:`server.export.limits`): a bundle the verifier would refuse is never finished,
nor its largest file first built whole in memory."""

from __future__ import annotations

import base64
import hashlib
import logging
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from seal_protocol import canonical_json
from seal_protocol.signing import SigningKey
from server.evidence.checkpoints import DASH, key_id
from server.export.limits import VERIFIERS, BundleLimits, Tally

logger = logging.getLogger(__name__)

#: The bundle's format (``docs/evidence.md``): 2 added ``absent_reason`` and ``not_stored`` to ``snapshots.jsonl``;
#: 3 added ``refused`` to it (the absent reason ``refused_by_court``, the files ``refused/<sha256>.jpg``) and the
#: quarantine's summary ``quarantine.jsonl``; 4 added ``snapshot_lost`` to it (the absent reason ``lost_on_seal``).
FORMAT = "court-seal-evidence/4"


class Progress(Protocol):
    """Told how an export goes: each phase, and the files copied so far of a part."""

    def phase(self, what: str) -> None: ...

    def files(self, what: str, done: int, total: int) -> None: ...


def sign_note(body: str, name: str, key: SigningKey) -> str:
    """A C2SP signed note of ``body`` (lines ending in a newline) by ``key`` under the key name ``name``."""
    signature = key.sign(body.encode("utf-8")).signature
    stamp = base64.b64encode(key_id(name, bytes(key.verify_key)) + signature).decode("ascii")
    return f"{body}\n{DASH} {name} {stamp}\n"


def manifest_note_body(manifest: bytes, bundle_format: str = FORMAT) -> str:
    """The body ``manifest.sig`` signs: the format's line, then the manifest's SHA-256."""
    return f"{bundle_format} manifest\n{hashlib.sha256(manifest).hexdigest()}\n"


#: What a JSON-lines file is written and counted by: lines gathered to about this many bytes.
CHUNK_BYTES = 256 * 1024


def each_json_line(values: Iterable[Any]) -> Iterator[bytes]:
    return (canonical_json(value) + b"\n" for value in values)


def json_lines(values: Iterable[Any]) -> bytes:
    return b"".join(each_json_line(values))


def batched(lines: Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``lines`` joined into chunks of about ``size`` bytes (each ends with a whole line)."""
    batch: list[bytes] = []
    held = 0
    for line in lines:
        batch.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(batch)
            batch, held = [], 0
    if batch:
        yield b"".join(batch)


class BundleWriter:
    """A zip being written at ``path`` (deflated; stored for a staging copy) within ``limits``; :meth:`close` (or
    the context's end) closes it. :class:`~server.export.limits.OverBound` from any write that would pass one."""

    def __init__(
        self,
        path: Path,
        *,
        progress: Progress | None = None,
        compress: bool = True,
        limits: BundleLimits = VERIFIERS,
    ) -> None:
        self.tally = Tally(limits)
        self._method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self._zip = zipfile.ZipFile(path, "w", compression=self._method, compresslevel=6 if compress else None)
        self._files: dict[str, dict[str, Any]] = {}
        self._progress = progress
        self._stamp = datetime.now(UTC).timetuple()[:6]

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def add(self, path: str, data: bytes) -> None:
        self.add_chunks(path, (data,))

    def add_lines(self, path: str, lines: Iterable[bytes]) -> None:
        """Add the JSON-lines file ``path`` of ``lines`` (each ending in a newline), a batch at a time."""
        self.add_chunks(path, batched(lines))

    def add_chunks(self, path: str, chunks: Iterable[bytes]) -> None:
        if path in self._files or path in ("manifest.json", "manifest.sig"):
            raise ValueError(f"{path} written twice")
        sha256, size = self._write(path, chunks)
        self._files[path] = {"path": path, "sha256": sha256, "size": size}

    def add_files(self, what: str, files: list[tuple[str, Callable[[], bytes | None]]]) -> None:
        """Add the files ``(zip path, read)``, one read at a time, reporting progress; a file ``read`` gives
        ``None`` for is left out."""
        for done, (path, read) in enumerate(files, start=1):
            data = read()
            if data is not None:
                self.add(path, data)
            if self._progress is not None and (done % 100 == 0 or done == len(files)):
                self._progress.files(what, done, len(files))

    def finish(self, head: dict[str, Any], *, key: SigningKey, key_name: str) -> bytes:
        """Write ``manifest.json`` (``head`` plus the files so far) and ``manifest.sig``; the manifest's bytes."""
        manifest = canonical_json({**head, "format": FORMAT, "files": [self._files[p] for p in sorted(self._files)]})
        self._write("manifest.json", (manifest,))
        self._write("manifest.sig", (sign_note(manifest_note_body(manifest), key_name, key).encode("utf-8"),))
        return manifest

    def _write(self, path: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write the member ``path`` of ``chunks``, each counted before it is written; its SHA-256 and size."""
        self.tally.member(path, self._zip.start_dir)  # where its local header goes
        info = zipfile.ZipInfo(path, date_time=self._stamp)
        info.compress_type = self._method
        info.external_attr = 0o644 << 16
        digest, size = hashlib.sha256(), 0
        with self._zip.open(info, "w") as member:
            for chunk in chunks:
                self.tally.chunk(chunk)
                digest.update(chunk)
                member.write(chunk)
                size += len(chunk)
        return digest.hexdigest(), size


def readme(case_no: str, verifier_key: str) -> bytes:
    text = f"""电子封条证据包 — 案号 {case_no}

本文件是法院电子封条系统导出的证据包：封条签名的事件原文、抓拍照片、告警、指令、解封申请、审计记录，
以及每个事件在服务器默克尔日志中的包含证明和日志签名检查点。格式见 docs/evidence.md。

离线验证（不需要服务器、网络或数据库），用法院公布的日志公钥（不要从本文件抄写：伪造的证据包会写上伪造者的公钥）：
    seal-verify case.zip --log-key 法院公布的日志公钥
或提供以前保存的检查点：
    seal-verify case.zip --known-checkpoint 旧检查点.txt
不给二者时，seal-verify 只能核验证据包自身一致（退出码 3，“未经核对”），不能证明它来自法院。
本证据包自称的日志公钥（须与法院公布的一致）：
    {verifier_key}

Electronic seal evidence bundle — case {case_no}

This file is an evidence bundle exported by the court's electronic seal system: the events exactly as the seals
signed them, the snapshots, alarms, commands, removal requests, audit entries, and for every event its inclusion
proof in the server's Merkle log with the log's signed checkpoint. Its format is docs/evidence.md.

Verify it offline (no server, network or database needed) with the log key the court publishes (do not copy it
from this file: a forged bundle would show the forger's key here):
    seal-verify case.zip --log-key THE-COURTS-PUBLISHED-LOG-KEY
or with a checkpoint you kept from before:
    seal-verify case.zip --known-checkpoint old-checkpoint.txt
Without either, seal-verify can only tell that the bundle is self-consistent (exit status 3, "NOT ANCHORED"), not
that it comes from the court.
The log key this bundle claims (it must be the court's published one):
    {verifier_key}
"""
    return text.encode("utf-8")
