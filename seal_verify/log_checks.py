"""The checks of the server's word: the manifest and its signature, the log's key and checkpoint, every inclusion
proof, the consistency proofs, a checkpoint the verifier kept, the audit lines (``docs/evidence.md``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import seal_verify.merkle as merkle
from seal_verify.bundle import Bundle, ObjectLines, load_object, object_lines, split_lines
from seal_verify.errors import NoteError, ProofError
from seal_verify.event_checks import normalise_case_no as _case
from seal_verify.notes import Checkpoint, NoteKey, b64decode, open_checkpoint, open_note, parse_key
from seal_verify.streamed import StreamedMember
from seal_verify.verdict import Check, cut, shown

#: The bundle's format as this verifier writes it, and every format it reads: 2 added ``absent_reason`` and
#: ``not_stored`` to ``snapshots.jsonl``, 3 its ``refused`` (``refused/<sha256>.jpg``) and ``quarantine.jsonl``, 4
#: its ``snapshot_lost`` (the absent reason ``lost_on_seal``); a bundle of format 1, 2 or 3 verifies as before.
FORMAT = "court-seal-evidence/4"
FORMATS = ("court-seal-evidence/1", "court-seal-evidence/2", "court-seal-evidence/3", FORMAT)
MANIFEST_FILES = ("manifest.json", "manifest.sig")


def manifest_note_body(manifest: bytes) -> str:
    """The body ``manifest.sig`` must be: the line of the format ``manifest`` declares (the current one if it
    declares none this verifier reads: ``manifest_files`` fails that), then its SHA-256."""
    return f"{bundle_format(manifest)} manifest\n{hashlib.sha256(manifest).hexdigest()}\n"


def bundle_format(manifest: bytes | None) -> str:
    """The format ``manifest.json`` declares, if it is one this verifier reads; else the current one."""
    try:
        declared = load_object(manifest, "manifest.json").get("format") if manifest is not None else None
    except ValueError:
        return FORMAT
    return declared if declared in FORMATS else FORMAT


def read_manifest(check: Check, bundle: Bundle) -> dict[str, Any] | None:
    data = bundle.get("manifest.json")
    if data is None:
        check.fail("manifest.json is missing")
        return None
    try:
        manifest = load_object(data, "manifest.json")
    except ValueError as exc:
        check.fail(str(exc))
        return None
    if manifest.get("format") not in FORMATS:
        check.fail(f"manifest.json: format {shown(manifest.get('format'))}, not one of {', '.join(FORMATS)}")
    if not isinstance(manifest.get("exported_by"), str) or not isinstance(manifest.get("case_no"), str):
        check.fail("manifest.json: case_no and exported_by must be strings")
    return manifest


def check_files(check: Check, bundle: Bundle, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        check.fail("manifest.json: files is not a list of objects")
        return
    paths = [f.get("path") for f in files]
    if not all(isinstance(path, str) for path in paths):
        check.fail("manifest.json: a path of files is not a string")
        return
    if paths != sorted(set(paths), key=str):
        check.fail("manifest.json: files are not sorted by path, or a path is listed twice")
    digests: dict[str, tuple[str, int]] = {}  # each member hashed once, however often it is listed
    for entry in files:
        path = entry.get("path")
        listed = isinstance(path, str) and path not in MANIFEST_FILES
        found = (digests.get(path) or _digest(bundle, path)) if listed else None
        if found is None:
            check.fail(f"{cut(str(path))}: listed in the manifest but missing")
            continue
        digests[path] = found
        if found != (entry.get("sha256"), entry.get("size")):
            check.fail(f"{path}: changed (its SHA-256 or size is not the manifest's)")
    for path in sorted(bundle.paths() - set(paths) - set(MANIFEST_FILES)):
        check.fail(f"{cut(path)}: in the bundle but not in the manifest")
    for path, data in sorted(bundle.under("removal/").items()):  # removal/<sha256>.<ext>: named by its hash
        if hashlib.sha256(data).hexdigest() != path.removeprefix("removal/").partition(".")[0]:
            check.fail(f"{path}: its bytes do not hash to its name")
    check.summary = f"{len(files)} files / {len(files)} 个文件"


def _digest(bundle: Bundle, path: str) -> tuple[str, int] | None:
    """The SHA-256 (hex) and size of the member at ``path``; ``None`` if it is missing. A JSON-lines file's were
    taken as it was read from the zip (:func:`seal_verify.streamed.scan_member`)."""
    if path.endswith(".jsonl"):
        member = bundle.jsonl(path)
        return None if member is None else (member.sha256, member.size)
    data = bundle.get(path)
    return None if data is None else (hashlib.sha256(data).hexdigest(), len(data))


def check_log_key(check: Check, bundle: Bundle, manifest: dict[str, Any] | None, pinned: str | None) -> NoteKey | None:
    """The key every signature is checked with: the pinned one if given, else log/key.txt's."""
    key = None
    data = bundle.get("log/key.txt")
    try:
        if data is None:
            raise NoteError("log/key.txt is missing")
        key = parse_key(data.decode("utf-8"))
    except (NoteError, UnicodeDecodeError) as exc:
        check.fail(f"log/key.txt: {exc}")
    if key is not None and manifest is not None and manifest.get("log_key") != key.text:
        check.fail("log/key.txt is not the manifest's log_key")
    if pinned is None:
        if key is not None:
            check.note(f"not pinned (give --log-key to pin it) / 未指定公钥: {cut(key.text)}")
        return key
    try:
        pinned_key = parse_key(pinned)
    except NoteError as exc:
        check.fail(f"--log-key: {exc}")
        return None
    if key is None:  # its reason is stated above: no key was read, so none was compared
        check.fail(
            "未能与指定的公钥比对：未读到证据包的日志公钥 / not compared with the pinned key: the bundle's log key "
            "could not be read"
        )
    elif not key.same_key(pinned_key):
        check.fail("the bundle's log key is not the pinned one / 证据包的日志公钥与指定的不同")
    check.summary = f"pinned / 已指定: {cut(pinned_key.text)}"
    return pinned_key


def check_manifest_signature(check: Check, bundle: Bundle, key: NoteKey | None) -> None:
    note, manifest = bundle.get("manifest.sig"), bundle.get("manifest.json")
    if key is None or note is None or manifest is None:
        check.fail("no key, manifest.sig or manifest.json to check")
        return
    try:
        body = open_note(note, key)
    except NoteError as exc:
        check.fail(str(exc))
        return
    if body != manifest_note_body(manifest):
        check.fail("manifest.sig is not the signature of this manifest.json")
    if note.rpartition(b"\n\n")[2].count(b"\n") != 1:  # no file lists manifest.sig: any byte added goes unseen
        check.fail("manifest.sig has signature lines besides the log key's; the server signs it alone")


def check_checkpoint(
    check: Check, bundle: Bundle, key: NoteKey | None, manifest: dict[str, Any] | None
) -> Checkpoint | None:
    note = bundle.get("log/checkpoint.txt")
    if key is None or note is None:
        check.fail("no key or log/checkpoint.txt to check")
        return None
    try:
        checkpoint = open_checkpoint(note, key)
    except NoteError as exc:
        check.fail(str(exc))
        return None
    if checkpoint.origin != key.name:
        check.fail(f"the checkpoint's origin {shown(checkpoint.origin)} is not the key's name {shown(key.name)}")
    if manifest is not None and manifest.get("log_origin") != checkpoint.origin:
        check.fail("the checkpoint's origin is not the manifest's log_origin")
    if manifest is not None and manifest.get("checkpoint_size") != checkpoint.size:
        check.fail(f"the checkpoint's size {checkpoint.size} is not the manifest's checkpoint_size")
    check.summary = f"{cut(checkpoint.origin)}, size {checkpoint.size} / 树大小 {checkpoint.size}"
    return checkpoint


def _hashes(value: Any) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise ValueError("hashes is not a list of base64 strings")
    return [b64decode(h) for h in value]


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{shown(value)} is not an integer")
    return value


@dataclass
class Leaf:
    what: str  # "event line 3", "audit line 1"
    data: bytes
    index: int | None


def check_inclusion(check: Check, bundle: Bundle, leaves: Iterable[Leaf], checkpoint: Checkpoint | None) -> None:
    """Each leaf's inclusion proof against the checkpoint. ``leaves`` is iterated once, or (log/proofs.jsonl not in
    the leaves' order) twice; the proofs are read line by line, each checked as its leaf comes."""
    if checkpoint is None:
        check.fail("no checkpoint to check the proofs against")
        return
    try:
        proofs = ObjectLines(bundle.jsonl("log/proofs.jsonl"), "log/proofs.jsonl")
    except ValueError as exc:
        check.fail(str(exc))
        return
    proven: set[int] = set()
    for line in proofs:
        index = line.get("leaf_index")
        if not isinstance(index, int) or isinstance(index, bool) or index in proven:
            check.fail(f"log/proofs.jsonl: a bad or repeated leaf_index {shown(index)}")
            continue
        proven.add(index)
    said: list[str] = []
    seen: set[int] = set()
    count = _in_step(leaves, proofs, checkpoint, seen, said)
    if count is None:  # not in the leaves' order: each leaf's proof found by its index
        named = zip_longest(
            (line.get("leaf_index") for line in proofs), (leaf.index for leaf in leaves), fillvalue=_END
        )
        if not all(a == b for a, b in named):
            check.fail("log/proofs.jsonl is not one proof per event line then per audit line, in their order")
        by_index: dict[int, dict[str, Any]] = {}
        for line in proofs:
            index = line.get("leaf_index")
            if isinstance(index, int) and not isinstance(index, bool):
                by_index.setdefault(index, line)
        said, seen, count = [], set(), 0
        for leaf in leaves:
            count += 1
            _check_leaf(leaf, by_index.get(leaf.index) if leaf.index is not None else None, checkpoint, seen, said)
    for problem in said:
        check.fail(problem)
    for index in sorted(proven - seen):
        check.fail(f"log/proofs.jsonl: a proof of leaf {index}, which no line of the bundle is")
    check.summary = f"{count} leaves / {count} 个叶子, tree size {checkpoint.size}"


_END = object()  # what zip_longest gives for the shorter of two sequences' missing items


def _in_step(
    leaves: Iterable[Leaf], proofs: Iterable[dict[str, Any]], checkpoint: Checkpoint, seen: set[int], said: list[str]
) -> int | None:
    """Check each leaf with the proof line in its place, if log/proofs.jsonl names the leaves' indices in their order
    (each then that of its place, the first of its index); how many leaves, or ``None`` if it does not."""
    count = 0
    for leaf, proof in zip_longest(leaves, proofs, fillvalue=_END):
        if not isinstance(leaf, Leaf) or not isinstance(proof, dict):
            return None
        index = proof.get("leaf_index")
        if not (index is None or type(index) is int) or index != leaf.index:
            return None
        count += 1
        _check_leaf(leaf, proof, checkpoint, seen, said)
    return count


def _check_leaf(
    leaf: Leaf, proof: dict[str, Any] | None, checkpoint: Checkpoint, seen: set[int], said: list[str]
) -> None:
    """What is wrong with ``leaf`` and its proof (``proof``: the first line of log/proofs.jsonl of its index), into
    ``said``; its index into ``seen``."""
    if leaf.index is None or leaf.index in seen:
        said.append(f"{leaf.what}: no leaf index, or one another line has")
        return
    seen.add(leaf.index)
    if proof is None:
        said.append(f"{leaf.what}: no inclusion proof for leaf {leaf.index}")
        return
    try:
        if _int(proof.get("tree_size")) != checkpoint.size:
            raise ProofError(f"the proof is against size {shown(proof.get('tree_size'))}, not the checkpoint's")
        hashes = _hashes(proof.get("hashes"))
        if merkle.root_from_inclusion(leaf.index, checkpoint.size, merkle.leaf_hash(leaf.data), hashes) != (
            checkpoint.root
        ):
            raise ProofError("the proof does not lead to the checkpoint's root")
    except (ProofError, ValueError) as exc:
        said.append(f"{leaf.what} (leaf {leaf.index}): {exc}")


def read_consistency(
    check: Check, data: StreamedMember | None, checkpoint: Checkpoint | None
) -> dict[int, dict[str, Any]]:
    """Check every proof of log/consistency.jsonl; the good ones by old size."""
    good: dict[int, dict[str, Any]] = {}
    try:
        lines = object_lines(data, "log/consistency.jsonl")
    except ValueError as exc:
        check.fail(str(exc))
        return good
    if not lines:
        check.absent("no earlier checkpoint to prove / 没有较早的检查点")
        return good
    if checkpoint is None:
        check.fail("no checkpoint to check the proofs against")
        return good
    for n, line in enumerate(lines, start=1):
        try:
            old, new = _int(line.get("old_size")), _int(line.get("new_size"))
            root_text = line.get("old_root")
            old_root = b64decode(root_text if isinstance(root_text, str) else "")
            if new != checkpoint.size:
                raise ProofError(f"it leads to size {new}, not the checkpoint's")
            merkle.verify_consistency(old, new, old_root, checkpoint.root, _hashes(line.get("hashes")))
        except (ProofError, ValueError) as exc:
            check.fail(f"log/consistency.jsonl line {n}: {exc}")
            continue
        good[old] = {**line, "root": old_root}
    check.summary = f"{len(good)} proofs from earlier checkpoints / {len(good)} 个一致性证明"
    return good


def check_audit(check: Check, bundle: Bundle, case_no: Any) -> list[Leaf]:
    """Each audit line an entry of the bundle's case (``case_no``, compared normalised) with its meta line."""
    data, meta_data = bundle.jsonl("audit.jsonl"), bundle.jsonl("audit-meta.jsonl")
    if data is None and meta_data is None:
        check.absent("the bundle has no audit entries / 证据包不含审计记录")
        return []
    leaves: list[Leaf] = []
    try:
        lines = split_lines(data or b"", "audit.jsonl")
        metas = object_lines(meta_data, "audit-meta.jsonl")
    except ValueError as exc:
        check.fail(str(exc))
        return leaves
    if len(metas) != len(lines):
        check.fail(f"audit-meta.jsonl has {len(metas)} lines for {len(lines)} audit entries")
    for n, line in enumerate(lines, start=1):
        meta = metas[n - 1] if n <= len(metas) else {}
        try:
            entry = load_object(line, f"audit.jsonl line {n}")
            if entry.get("kind") != "audit" or entry.get("id") != meta.get("audit_id"):
                raise ValueError(f"audit.jsonl line {n} is not the audit entry its meta line names")
            named = entry.get("case_no")
            if not isinstance(case_no, str) or not isinstance(named, str) or _case(named) != _case(case_no):
                raise ValueError(f"audit.jsonl line {n} is an entry of case {shown(named)}, not {shown(case_no)}")
        except ValueError as exc:
            check.fail(str(exc))
        index = meta.get("leaf_index")
        good = isinstance(index, int) and not isinstance(index, bool)
        last = leaves[-1].index if leaves else None
        if isinstance(index, int) and good and last is not None and index <= last:
            check.fail(f"audit line {n}: leaf index {index} is not after {last} (reordered or twice)")
        leaves.append(Leaf(f"audit line {n}", line, index if good else None))
    check.summary = f"{len(lines)} audit entries / {len(lines)} 条审计记录"
    return leaves
