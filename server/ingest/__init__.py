"""The ingest: turn received MQTT messages into committed rows, and notice seals that fall silent.

Each message becomes exactly one of: a stored event, a no-op duplicate, a status update, a stored snapshot, or a
quarantine row with a reason.

- :mod:`~server.ingest.results`: what a message became (outcome, reason);
- :mod:`~server.ingest.batch`: the checks and the rows of one batch, a pure function of the messages and the database;
- :mod:`~server.ingest.ingestor`: the transactions, retries and poison-message isolation around a batch;
- :mod:`~server.ingest.mqtt`: the MQTT loop (acknowledge after commit) and the court's receipts
  (:mod:`~server.ingest.receipts`);
- :mod:`~server.ingest.liveness`: offline alarms for seals that fall silent;
- :mod:`~server.ingest.quarantine`: reading what was refused (API and ``seal-server quarantine``).
"""
