"""What the seals sent, as stored: the events (the signed bytes exactly as received) and the snapshots
(:mod:`~server.evidence.models`; the files in :mod:`~server.evidence.snapshot_files`), and queries over them.
"""
