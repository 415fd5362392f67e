"""The Merkle log's pure core against the published RFC 6962 vectors (transparency-dev/merkle, see the data file's
``source``), and the server's proofs against the offline verifier's checks (seal_verify.merkle) for random sizes; the
signed-note checkpoints."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seal_protocol.signing import generate_signing_key
from seal_verify import merkle as verifier
from seal_verify.errors import ProofError as VerifyError
from server.evidence import merkle
from server.evidence.checkpoints import Checkpoint, key_id, open_checkpoint, sign_checkpoint, verifier_key
from server.evidence.errors import ProofError

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "data" / "rfc6962_vectors.json").read_text("utf-8"))
LEAVES = [bytes.fromhex(x) for x in VECTORS["leaf_inputs_hex"]]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """The offline verifier's inclusion check (seal_verify), which the server's proofs must satisfy."""
    if verifier.root_from_inclusion(index, size, leaf, proof) != root:
        raise VerifyError("the inclusion proof does not lead to the root")


def b64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def tree(size: int) -> dict[merkle.Node, bytes]:
    """Every complete subtree of a tree of ``size`` leaves whose data is the leaf's index."""
    _, made = merkle.append(0, [], [merkle.leaf_hash(str(i).encode()) for i in range(size)])
    return dict(made)


def proof(ranges: list[merkle.Range], nodes: dict[merkle.Node, bytes]) -> list[bytes]:
    return [merkle.range_hash(start, end, nodes) for start, end in ranges]


def test_root_hashes_of_the_eight_leaves() -> None:
    for size, root in enumerate(VECTORS["root_hashes_hex"]):
        assert merkle.tree_hash(LEAVES[:size]).hex() == root
        frontier, _ = merkle.append(0, [], [merkle.leaf_hash(leaf) for leaf in LEAVES[:size]])
        assert merkle.root_from_frontier(frontier).hex() == root


def test_every_complete_subtree_of_the_eight_leaves() -> None:
    _, made = merkle.append(0, [], [merkle.leaf_hash(leaf) for leaf in LEAVES])
    nodes = dict(made)
    for level, hashes in enumerate(VECTORS["node_hashes_hex"]):
        for index, h in enumerate(hashes):
            assert nodes[(level, index)].hex() == h


@pytest.mark.parametrize("probe", VECTORS["inclusion"], ids=lambda p: p["file"].removeprefix("testdata/"))
def test_inclusion_probes(probe: dict[str, Any]) -> None:
    args = (probe["leafIdx"], probe["treeSize"], b64(probe["leafHash"]), [b64(p) for p in probe["proof"] or []])
    if probe["wantErr"]:
        with pytest.raises(VerifyError):
            verify_inclusion(*args, b64(probe["root"]))
    else:
        verify_inclusion(*args, b64(probe["root"]))


@pytest.mark.parametrize("probe", VECTORS["consistency"], ids=lambda p: p["file"].removeprefix("testdata/"))
def test_consistency_probes(probe: dict[str, Any]) -> None:
    args = (
        probe["size1"],
        probe["size2"],
        b64(probe["root1"]),
        b64(probe["root2"]),
        [b64(p) for p in probe["proof"] or []],
    )
    if probe["wantErr"]:
        with pytest.raises(VerifyError):
            verifier.verify_consistency(*args)
    else:
        verifier.verify_consistency(*args)


def test_our_proofs_of_the_eight_leaves_equal_the_published_ones() -> None:
    _, made = merkle.append(0, [], [merkle.leaf_hash(leaf) for leaf in LEAVES])
    nodes = dict(made)
    happy = [p for p in VECTORS["inclusion"] if p["desc"] == "happy path" and p["treeSize"] <= 8]
    assert happy
    for p in happy:
        assert proof(merkle.inclusion_ranges(p["leafIdx"], p["treeSize"]), nodes) == [b64(h) for h in p["proof"] or []]
    happy = [p for p in VECTORS["consistency"] if p["desc"] == "happy path" and p["size1"] > 0]
    assert happy
    for p in happy:
        assert proof(merkle.consistency_ranges(p["size1"], p["size2"]), nodes) == [b64(h) for h in p["proof"] or []]


@given(st.data(), st.integers(1, 300))
def test_every_inclusion_proof_verifies_and_a_tampered_one_does_not(data: st.DataObject, size: int) -> None:
    nodes = tree(size)
    root = merkle.range_hash(0, size, nodes)
    index = data.draw(st.integers(0, size - 1))
    path = proof(merkle.inclusion_ranges(index, size), nodes)
    assert len(merkle.nodes_of(merkle.inclusion_ranges(index, size))) <= 2 * size.bit_length()
    verify_inclusion(index, size, nodes[(0, index)], path, root)
    if path:
        at, bit = data.draw(st.integers(0, len(path) - 1)), data.draw(st.integers(0, 255))
        tampered = list(path)
        tampered[at] = bytes(b ^ (1 << bit % 8 if i == bit // 8 else 0) for i, b in enumerate(tampered[at]))
        with pytest.raises(VerifyError):
            verify_inclusion(index, size, nodes[(0, index)], tampered, root)
    with pytest.raises(VerifyError):
        verify_inclusion(index, size, merkle.leaf_hash(b"another event"), path, root)
    if size > 1:
        with pytest.raises(VerifyError):
            verify_inclusion((index + 1) % size, size, nodes[(0, index)], path, root)


@given(st.data(), st.integers(1, 300))
def test_every_consistency_proof_verifies_and_a_tampered_one_does_not(data: st.DataObject, new: int) -> None:
    nodes = tree(new)
    old = data.draw(st.integers(1, new))
    old_root, new_root = merkle.range_hash(0, old, nodes), merkle.range_hash(0, new, nodes)
    path = proof(merkle.consistency_ranges(old, new), nodes)
    verifier.verify_consistency(old, new, old_root, new_root, path)
    if path:
        tampered = list(path)
        at = data.draw(st.integers(0, len(path) - 1))
        tampered[at] = merkle.leaf_hash(tampered[at])
        with pytest.raises(VerifyError):
            verifier.verify_consistency(old, new, old_root, new_root, tampered)
        with pytest.raises(VerifyError):
            verifier.verify_consistency(old, new, old_root, new_root, path[:-1])
    if old < new:
        with pytest.raises(VerifyError):
            verifier.verify_consistency(old, new, merkle.leaf_hash(b"forked"), new_root, path)


@given(st.integers(0, 200), st.integers(0, 200))
def test_appending_in_two_steps_equals_appending_at_once(first: int, second: int) -> None:
    hashes = [merkle.leaf_hash(str(i).encode()) for i in range(first + second)]
    frontier, made1 = merkle.append(0, [], hashes[:first])
    frontier, made2 = merkle.append(first, frontier, hashes[first:])
    at_once, made = merkle.append(0, [], hashes)
    assert frontier == at_once and made1 + made2 == made
    assert merkle.root_from_frontier(frontier) == merkle.tree_hash([str(i).encode() for i in range(first + second)])


def test_a_signed_checkpoint_opens_with_its_verifier_key_only() -> None:
    key, other = generate_signing_key(), generate_signing_key()
    checkpoint = Checkpoint("court.example/seal-log", 8, bytes.fromhex(VECTORS["root_hashes_hex"][8]))
    note = sign_checkpoint(checkpoint, key)
    body, signature = note.split("\n\n")
    assert body.split("\n") == ["court.example/seal-log", "8", "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="]
    dash, name, stamp = signature.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", "court.example/seal-log")
    assert base64.b64decode(stamp)[:4] == key_id(name, bytes(key.verify_key))
    assert open_checkpoint(note, verifier_key(name, key.verify_key)) == checkpoint
    with pytest.raises(ProofError):
        open_checkpoint(note, verifier_key(name, other.verify_key))
    with pytest.raises(ProofError):
        open_checkpoint(note.replace("\n8\n", "\n9\n"), verifier_key(name, key.verify_key))


def test_the_key_id_follows_the_signed_note_spec() -> None:
    # the example verifier key of golang.org/x/mod/sumdb/note:
    # PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW
    name, public = "PeterNeumann", base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1:]
    assert key_id(name, public).hex() == "c74f20a3"
