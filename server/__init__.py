"""The court side of the electronic seal: MQTT ingest that verifies and stores events per case, REST API, storage.

The composition root is :func:`server.app.create_app`; the command line is :mod:`server.cli`.
"""
