"""The evidence export: a case's events, snapshots, records and Merkle proofs as one zip (``docs/evidence.md``)."""
