"""The seal agent: the program on the Raspberry Pi that warns, records signed events and delivers them.

``core.SealAgent`` holds the behaviour and talks to hardware only through the protocols in ``interfaces``;
``cli`` is the composition root that wires gpiozero, simpleaudio and paho to it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("court-seal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
