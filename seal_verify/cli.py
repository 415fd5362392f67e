"""``seal-verify``: check a court evidence bundle offline and print the verdict (zh-CN and English, or JSON).

    seal-verify case.zip [--log-key KEY] [--known-checkpoint FILE [--consistency-proof FILE ...]]
                         [--tsa-root FILE] [--json]

Exit status: 0 every check holds and the log key is anchored (``--log-key``, or a kept checkpoint that verifies with
it); 1 a check failed (or the bundle cannot be read); 2 a usage error (a file given as an option cannot be read, or
holds more than 1 MiB; a ``--log-key`` that is no verifier key); 3 every check holds but the log key is not
anchored: the bundle is only self-consistent, which anyone can forge — or a ``--known-checkpoint`` was given and no
consistency proof compares it with the bundle's (the verdict says which to fetch, ``GET /api/log/consistency``).
Warnings (a seal's chain that may be truncated, ``chain_ends``; a time stamp whose TSA is not pinned) change no exit
status: a warning proves no forgery. The verdict prints them and no longer reads "every check holds"; ``--json``
names them in ``warnings``.
"""

from __future__ import annotations

import argparse
import errno
import io
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

from seal_verify.errors import NoteError
from seal_verify.notes import parse_key
from seal_verify.verdict import json_text
from seal_verify.verify import verify_bundle

logger = logging.getLogger("seal_verify.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seal-verify",
        description="离线验证法院电子封条证据包 / Verify a court electronic-seal evidence bundle offline.",
    )
    parser.add_argument("bundle", type=Path, metavar="case.zip", help="the evidence bundle")
    parser.add_argument("--log-key", metavar="KEY", help="the log's verifier key (name+keyid+base64), pinned")
    parser.add_argument(
        "--known-checkpoint", type=Path, metavar="FILE", help="a checkpoint (signed note) you kept from earlier"
    )
    parser.add_argument(
        "--consistency-proof",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a consistency proof (JSON) to or from the kept checkpoint, e.g. GET /api/log/consistency's answer",
    )
    parser.add_argument("--tsa-root", type=Path, metavar="FILE", help="the TSA's root certificate(s), PEM, pinned")
    parser.add_argument("--json", action="store_true", help="print the verdict as JSON")
    return parser


#: A kept checkpoint, a consistency proof or TSA roots are a few kilobytes: a file larger than this is none of them
#: (and /dev/zero was read until memory ran out).
MAX_OPTION_BYTES = 1024 * 1024


class OptionFileTooLarge(OSError):
    """A file given as an option is larger than MAX_OPTION_BYTES."""


class OptionFileNotRegular(OSError):
    """A file given as an option is a pipe, a device or a directory: opening a pipe would wait for a writer."""


def _read(path: Path) -> bytes:
    # Opened without waiting (a FIFO with no writer would hold the verifier for good), then checked to be a regular
    # file on the descriptor itself (no race between a check of the name and its opening).
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # (none on Windows, where opening a pipe's name does not wait)
    fd = os.open(path, os.O_RDONLY | nonblocking)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OptionFileNotRegular(errno.EINVAL, "not a regular file (a pipe, a device, a directory)", str(path))
    with os.fdopen(fd, "rb") as file:
        if nonblocking:
            os.set_blocking(fd, True)
        data = file.read(MAX_OPTION_BYTES + 1)
    if len(data) > MAX_OPTION_BYTES:
        raise OptionFileTooLarge(errno.EFBIG, f"more than {MAX_OPTION_BYTES} bytes: no checkpoint, proof or PEM", path)
    return data


def _print(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped (seal-verify case.zip | head): the exit status still tells
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # and Python's final flush finds no pipe


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # GBK (Windows in China, redirected) has no '✔': escape what it lacks
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="seal-verify: %(levelname)s %(message)s")
    try:
        known = None if args.known_checkpoint is None else _read(args.known_checkpoint)
        proofs = [_read(p) for p in args.consistency_proof]
        roots = None if args.tsa_root is None else _read(args.tsa_root)
    except OSError as exc:
        sys.stderr.write(f"seal-verify: cannot read {exc.filename}: {exc.strerror}\n")
        return 2
    try:
        if args.log_key is not None:
            parse_key(args.log_key)
    except NoteError as exc:
        sys.stderr.write(f"seal-verify: --log-key: {exc}\n")
        return 2
    if proofs and known is None:
        sys.stderr.write("seal-verify: --consistency-proof needs --known-checkpoint\n")
        return 2
    verdict = verify_bundle(
        args.bundle, known_checkpoint=known, consistency_proofs=proofs, tsa_roots_pem=roots, log_key=args.log_key
    )
    _print(json_text(verdict.as_json()) if args.json else verdict.text())
    if not verdict.ok:
        return 1
    return 0 if verdict.anchored else 3


if __name__ == "__main__":
    sys.exit(main())
