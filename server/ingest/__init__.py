"""The ingest core: turn received MQTT messages into committed rows. No MQTT in here.

Each message becomes exactly one of: a stored event, a no-op duplicate, a status update, a stored snapshot, or a
quarantine row with a reason (:mod:`server.ingest.batch` has the checks, :mod:`server.ingest.ingestor` the
transactions).
"""

from server.ingest.batch import QUARANTINE_RAW_LIMIT, IngestBatch, VerifyKeyCache
from server.ingest.ingestor import Ingestor
from server.ingest.results import IngestResult, Message, Outcome, Reason, classify_envelope_error

__all__ = [
    "QUARANTINE_RAW_LIMIT",
    "IngestBatch",
    "IngestResult",
    "Ingestor",
    "Message",
    "Outcome",
    "Reason",
    "VerifyKeyCache",
    "classify_envelope_error",
]
