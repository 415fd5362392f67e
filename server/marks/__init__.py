"""How far the ingest has caught up with what the broker held for it, shared by every process of the court: the
ingest records its marks, the liveness check, the commands' expiry and the health page judge by them. Below the
ingest and the commands (it depends on :mod:`server.core` only)."""
