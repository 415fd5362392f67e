"""What the seals sent, as stored: the events (the signed bytes exactly as received) and the snapshots
(:mod:`~server.evidence.models`; the files in :mod:`~server.evidence.snapshots`), and queries over them.
"""
