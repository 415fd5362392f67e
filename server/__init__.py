"""The court side of the electronic seal: MQTT ingest that verifies and stores events per case, REST API, storage.

The composition root is :func:`server.app.create_app`; the command line is :mod:`server.cli`.
"""

# Every audit entry is a leaf of the evidence log, appended when its transaction commits: the log installs its
# appender into the audit log when imported (the audit log sits below the evidence and cannot import it). Imported
# here so that whatever imports the server records its entries whole — the app, the CLI, a script or a test.
import server.evidence.log  # noqa: E402, F401
