"""What anchors the bundle's checkpoint outside the bundle: a checkpoint the verifier kept from earlier (with a
consistency proof to or from it), and the RFC 3161 time stamp of the checkpoint."""

from __future__ import annotations

import base64
import binascii
import importlib
from collections.abc import Sequence
from typing import Any

import seal_verify.merkle as merkle
from seal_verify.bundle import Bundle, load_object
from seal_verify.errors import NoteError, ProofError
from seal_verify.notes import Checkpoint, NoteKey, b64decode, open_checkpoint
from seal_verify.verdict import Check, Status, cut, shown


def parse_proof_file(data: bytes) -> dict[str, Any]:
    """A consistency proof given by the verifier: the bundle's JSON form (``hashes`` in base64) or the server's
    ``GET /api/log/consistency`` answer (``proof`` in hex)."""
    proof = load_object(data, "the consistency proof file", canonical=False)
    try:
        if "hashes" in proof:
            hashes = [b64decode(h) for h in proof["hashes"]]
        else:
            hashes = [bytes.fromhex(h) for h in proof["proof"]]
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise ValueError("the consistency proof file has no hashes (base64) or proof (hex) list") from None
    old, new = proof.get("old_size"), proof.get("new_size")
    if not isinstance(old, int) or not isinstance(new, int):
        raise ValueError("the consistency proof file needs old_size and new_size")
    return {"old_size": old, "new_size": new, "hashes": hashes}


def check_known(
    check: Check,
    known_note: bytes,
    key: NoteKey | None,
    checkpoint: Checkpoint | None,
    bundled: dict[int, dict[str, Any]],
    given: Sequence[dict[str, Any]],
) -> str | None:
    """The kept checkpoint is signed by the log's key, and it and the bundle's are of one append-only log. If no
    consistency proof between the two is at hand (the bundle keeps those from earlier exports' checkpoints and each
    day's last; a checkpoint fetched from ``GET /api/log/checkpoint`` is mostly neither), nothing is proved either
    way: the check is absent and this returns what to fetch — the bundle is then not anchored, not failed."""
    if key is None or checkpoint is None:
        check.fail("no log key or checkpoint in the bundle to compare with")
        return None
    try:  # a note kept on Windows may have CRLF line ends: the signed bytes are its LF lines
        known = open_checkpoint(known_note.replace(b"\r\n", b"\n"), key)
    except NoteError as exc:
        check.fail(f"the kept checkpoint: {exc}")
        return None
    check.summary = (
        f"kept size {known.size}, bundle size {checkpoint.size} / 保存的检查点 {known.size}，证据包 {checkpoint.size}"
    )
    if known.origin != checkpoint.origin:
        check.fail(f"the kept checkpoint is of log {shown(known.origin)}, not {shown(checkpoint.origin)}")
        return None
    old, new = (known, checkpoint) if known.size <= checkpoint.size else (checkpoint, known)
    if old.size == new.size:
        if old.root != new.root:
            check.fail("the kept checkpoint has the same size but another root: the log was rewritten / 日志被改写")
        return None
    proofs = [p["hashes"] for p in given if (p["old_size"], p["new_size"]) == (old.size, new.size)]
    line = bundled.get(old.size) if new is checkpoint else None
    if line is not None:
        if line["root"] != old.root:
            check.fail("the bundle's proof starts from another root than the kept checkpoint's: the log was rewritten")
            return None
        proofs.append([base64.b64decode(h) for h in line["hashes"]])
    if not proofs:
        hint = _no_proof(known, checkpoint)
        check.absent(f"not compared: no consistency proof from size {old.size} to {new.size} / 未比对：缺少一致性证明")
        check.note(hint)
        return hint
    problems = []
    for hashes in proofs:
        try:
            merkle.verify_consistency(old.size, new.size, old.root, new.root, hashes)
            return None
        except ProofError as exc:
            problems.append(str(exc))
    check.fail(f"no consistency proof from size {old.size} to {new.size} verifies: {'; '.join(problems)}")
    return None


def _no_proof(known: Checkpoint, checkpoint: Checkpoint) -> str:
    """Why the kept checkpoint could not be compared, and how to fetch the proof that compares it."""
    old, new = sorted((known.size, checkpoint.size))
    if known.size > checkpoint.size:
        why = (
            f"the kept checkpoint ({known.size} leaves) is larger than the bundle's ({checkpoint.size}): this bundle "
            "is older, or leaves were removed from the log"
        )
        zh = "保存的检查点比证据包的大：证据包较早，或日志被删减"
    else:
        why = f"the bundle holds no consistency proof from the kept checkpoint's size {old} to its {new}"
        zh = "证据包中没有从保存的检查点出发的一致性证明"
    return (
        f"{why}. Fetch it from the court's server (public, no login): GET /api/log/consistency?old={old}&new={new}, "
        "save the answer to a file and verify again with --consistency-proof FILE / "
        f"{zh}。请从法院服务器获取（公开，无需登录）：GET /api/log/consistency?old={old}&new={new}，"
        "保存为文件后用 --consistency-proof 文件 再次核验"
    )


def check_timestamp(check: Check, bundle: Bundle, roots_pem: bytes | None) -> dict[str, Any]:
    """The RFC 3161 token of log/checkpoint.txt (``seal_verify.timestamp``); facts for the verdict."""
    token = bundle.get("log/checkpoint.tsr")
    if token is None and roots_pem is not None:
        check.fail("the bundle has no time stamp, though a TSA root was pinned (--tsa-root) / 未附可信时间戳")
        return {}
    if token is None:
        check.absent("the server has no time-stamping authority configured / 服务器未配置可信时间戳")
        return {}
    note, chain = bundle.get("log/checkpoint.txt"), bundle.get("log/tsa-chain.pem")
    if note is None or chain is None:
        check.fail("log/checkpoint.tsr without log/checkpoint.txt or log/tsa-chain.pem")
        return {}
    try:
        timestamp = importlib.import_module("seal_verify.timestamp")
    except ImportError:
        check.fail("this seal-verify cannot check RFC 3161 time stamps (seal_verify.timestamp is missing)")
        return {}
    verdict = timestamp.verify_timestamp(token, note, chain, roots_pem)
    if not verdict.ok:
        check.fail(str(verdict.reason))
        return {}
    tsa = str(verdict.tsa_subject)
    if verdict.pinned:
        check.summary = f"{verdict.gen_time} by {cut(tsa)}"
        return {"timestamp": str(verdict.gen_time), "tsa": tsa}
    # Unpinned, the chain is checked only against its own root, which whoever made the bundle may have made: the
    # token's time is that maker's claim. Not "ok": a warning, the time labelled as a claim, in the facts too.
    check.warn(
        "时间戳机构的证书链未经核对（未给出 --tsa-root）：任何人都能用自签的证书链制作这样的时间戳，"
        "其时间只是制作者所称 / "
        "the TSA's chain is not pinned (give --tsa-root): anyone can make such a token with a self-signed chain of "
        "their own; its time is only its maker's claim",
        Status.UNANCHORED,
    )
    check.summary = f"{verdict.gen_time} as claimed by an unpinned TSA {cut(tsa)} / 未锚定的时间戳机构所称"
    claimed = f"{verdict.gen_time} (claimed by an unpinned TSA: not checked who / 未锚定的时间戳机构所称，未经核对)"
    return {"timestamp": claimed, "tsa": tsa + " (unpinned: not checked who / 未核对机构)"}
