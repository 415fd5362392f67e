"""Alarms: what a judge must look at. Opened inside the ingest's transaction, acknowledged and closed by people.

- :mod:`server.alarms.state`: kinds, severities, and the one transition function of an alarm's state;
- :mod:`server.alarms.models`: the tables (alarms, notification targets and outbox, chain state);
- :mod:`server.alarms.book`: raising, folding and auto-closing alarms within a transaction (ingest, liveness);
- :mod:`server.alarms.service`: keyword-only functions for the API (list, get, acknowledge, close).
"""

from server.alarms.state import AlarmKind, AlarmState, Severity, transition

__all__ = ["AlarmKind", "AlarmState", "Severity", "transition"]
