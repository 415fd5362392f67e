"""What the seal does, through the interfaces of :mod:`seal_agent.interfaces` only (no hardware, no network):
:mod:`.seal` (:class:`~seal_agent.behaviour.seal.SealAgent`: presence, tamper, heartbeats, arm/disarm),
:mod:`.warning` (when to speak), :mod:`.triggers` (what a trigger does: warning, event, snapshots) and
:mod:`.commands` (the court's signed commands). Every event it raises goes to the journal's recorder.
"""
