"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and their verifiers. No database.

A leaf hashes as ``SHA-256(0x00 || data)``, an interior node as ``SHA-256(0x01 || left || right)``, and a tree of n
leaves splits at the largest power of two smaller than n (RFC 9162 §2.1.1). The empty tree's hash is
``SHA-256("")``.

A *node* ``(level, index)`` is the complete subtree of ``2**level`` leaves starting at leaf ``index * 2**level``:
once its last leaf is appended its hash never changes, so a store keeps every node's hash and answers a proof with
a few lookups. The proofs are computed in two steps: which leaf ranges a proof consists of (:func:`inclusion_ranges`,
:func:`consistency_ranges`), which nodes make up those ranges (:func:`nodes_of`), then the hashes
(:func:`range_hash`) from the looked-up nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from server.evidence.errors import ProofError

Node = tuple[int, int]  # (level, index)
Range = tuple[int, int]  # leaves [start, end)

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` ≥ 2): where RFC 6962 splits a tree of ``n`` leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of the leaf *data* ``leaves``, by the RFC's definition (linear: for tests and
    small trees)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = split(len(leaves))
    return node_hash(tree_hash(leaves[:k]), tree_hash(leaves[k:]))


def _is_node(start: int, end: int) -> bool:
    size = end - start
    return size > 0 and size & (size - 1) == 0 and start % size == 0


def _node_of(start: int, end: int) -> Node:
    level = (end - start).bit_length() - 1
    return level, start >> level


def nodes_of(ranges: Iterable[Range]) -> set[Node]:
    """The complete subtrees whose hashes make up the hashes of ``ranges`` (for a proof's ranges: O(log n))."""
    found: set[Node] = set()
    stack = list(ranges)
    while stack:
        start, end = stack.pop()
        if _is_node(start, end):
            found.add(_node_of(start, end))
        else:
            k = split(end - start)
            stack += [(start, start + k), (start + k, end)]
    return found


def range_hash(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH of leaves ``[start, end)`` from the hashes of :func:`nodes_of` that range."""
    if end <= start:
        raise ValueError(f"empty range [{start}, {end})")
    if _is_node(start, end):
        return nodes[_node_of(start, end)]
    k = split(end - start)
    return node_hash(range_hash(start, start + k, nodes), range_hash(start + k, end, nodes))


def peaks(size: int) -> list[Node]:
    """The complete subtrees a tree of ``size`` leaves is made of, left to right (one per bit set in ``size``)."""
    found, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            found.append((level, start >> level))
            start += 1 << level
    return found


def append(
    size: int, frontier: Sequence[bytes], leaf_hashes: Iterable[bytes]
) -> tuple[list[bytes], list[tuple[Node, bytes]]]:
    """Append ``leaf_hashes`` to a tree of ``size`` leaves whose :func:`peaks` hash to ``frontier``.

    Returns the new frontier and every node completed on the way (the leaves included, as level 0), in order.
    """
    if len(frontier) != size.bit_count():
        raise ValueError(f"a tree of {size} leaves has {size.bit_count()} peaks, got {len(frontier)}")
    stack = list(frontier)
    made: list[tuple[Node, bytes]] = []
    for h in leaf_hashes:
        made.append(((0, size), h))
        level, index = 0, size
        size += 1
        while index & 1:  # a right child: its parent is complete now
            h = node_hash(stack.pop(), h)
            level, index = level + 1, index >> 1
            made.append(((level, index), h))
        stack.append(h)
    return stack, made


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The tree hash from the hashes of its :func:`peaks`."""
    if not frontier:
        return EMPTY_ROOT
    h = frontier[-1]
    for left in reversed(frontier[:-1]):
        h = node_hash(left, h)
    return h


# -- proofs --------------------------------------------------------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes are the inclusion proof of leaf ``index`` in a tree of ``size`` (RFC 9162 PATH),
    bottom up."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The ranges whose hashes are the consistency proof from size ``old`` to ``new`` (RFC 9162 SUBPROOF), bottom
    up; empty if ``old`` equals ``new``. ``old`` must be at least 1 (a proof from the empty tree means nothing)."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from {old} to {new} leaves")
    if old == new:
        return []
    ranges: list[Range] = []
    start, end, complete = 0, new, True  # complete: the old tree is the whole of [start, end) seen so far
    while old - start != end - start:
        k = split(end - start)
        if old - start <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, complete = start + k, False
    if not complete:
        ranges.append((start, end))
    return ranges[::-1]
