"""The seal agent: the program on the Raspberry Pi that warns, records signed events and delivers them.

The data path runs one way, and the packages follow it: ``devices`` (PIR, tamper switch, speaker, camera) →
``behaviour`` (``behaviour.seal.SealAgent``: when to warn, what a trigger records; it talks to the world only
through the protocols in ``interfaces``) → ``journal`` (the recorder, the outbox, the snapshot spool, and the
delivery that drains them through ``mqtt`` and takes the broker's PUBACKs and the court's receipts itself).
``runtime`` is the one composition root that wires gpiozero, simpleaudio, OpenCV and paho; ``cli`` runs it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("court-seal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
