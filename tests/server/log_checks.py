"""The stored Merkle log checked against an RFC 6962 tree computed here from the stored bytes, as the RFC writes it,
not by the server's own code."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from server.audit.models import AuditEntry
from server.core.db import SessionFactory
from server.evidence import log
from server.evidence.models import Event, LogLeaf


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962's Merkle Tree Hash of ``leaves`` (section 2.1)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def logged_events(session_factory: SessionFactory) -> list[bytes]:
    """The bytes of the event leaves, in the log's order, once the whole stored log has been checked: it is the
    RFC 6962 tree of the stored events and audit entries (in the order of their commits), with no index twice and
    every row a leaf naming its own row's bytes."""
    with session_factory() as session:
        events = {e.id: e.raw for e in session.scalars(select(Event))}
        entries = {a.id: a.record for a in session.scalars(select(AuditEntry))}
        leaves = session.scalars(select(LogLeaf).order_by(LogLeaf.leaf_index)).all()
        assert [leaf.leaf_index for leaf in leaves] == list(range(len(events) + len(entries)))
        assert sorted(leaf.event_id for leaf in leaves if leaf.event_id is not None) == sorted(events)
        assert sorted(leaf.audit_id for leaf in leaves if leaf.audit_id is not None) == sorted(entries)
        raws = [events[leaf.event_id] if leaf.event_id is not None else entries[leaf.audit_id or 0] for leaf in leaves]
        for leaf, raw in zip(leaves, raws, strict=True):
            assert leaf.leaf_hash == hashlib.sha256(b"\x00" + raw).digest()
        assert log.root_hash(session, len(raws)) == rfc6962_root(raws)
        return [events[leaf.event_id] for leaf in leaves if leaf.event_id is not None]


def assert_whole_tree(session_factory: SessionFactory) -> int:
    """:func:`logged_events`' checks; the number of event leaves."""
    return len(logged_events(session_factory))
