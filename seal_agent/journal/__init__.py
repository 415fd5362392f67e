"""The seal's durable record and its delivery to the court.

Data flows one way through it: :mod:`.recorder` signs, chains and commits each event to the :mod:`.outbox`;
snapshots go to the :mod:`.snapshot_store` on disk and are queued by the :mod:`.snapshot_spool`; :mod:`.delivery`
owns the couriers (:mod:`.courier`, with their re-send rules in :mod:`.resend`) that drain both queues through the
MQTT publisher, and routes the broker's PUBACKs and the court's signed receipts back to them. Nothing here imports a
device or the seal's behaviour.
"""
