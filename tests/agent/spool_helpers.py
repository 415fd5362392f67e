"""The snapshot spool's test parts: distinct real JPEGs, a real recorder on a real outbox, and the thinnings the
outbox holds as signed ``outbox_full`` events."""

from __future__ import annotations

from typing import Any

import numpy as np

from seal_agent.behaviour.seal import SystemClock
from seal_agent.devices.camera import encode_jpeg
from seal_agent.journal.outbox import Outbox
from seal_agent.journal.recorder import EventRecorder
from seal_protocol import EventType, decode_envelope
from seal_protocol.signing import SigningKey

KEY = SigningKey.generate()


def jpeg_of(seed: int, side: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_jpeg(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), quality=90)


def recorder_on(outbox: Outbox) -> EventRecorder:
    return EventRecorder(
        device_id="seal-test-1", case_no="(2021)苏0214执1234号", signing_key=KEY, outbox=outbox, clock=SystemClock()
    )


def thinnings(outbox: Outbox) -> list[dict[str, Any]]:
    """The payloads of the ``outbox_full`` events committed to ``outbox``, in ``seq`` order."""
    envelopes = (decode_envelope(event.data) for event in outbox.pending(after=0, limit=100_000))
    return [envelope.payload for envelope in envelopes if envelope.type is EventType.OUTBOX_FULL]
