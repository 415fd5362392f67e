"""The audit log: one append-only row per human action (:mod:`~server.audit.models`), written by
:func:`~server.audit.service.record_audit` in the transaction of the action it records.
"""
