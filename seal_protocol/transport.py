"""How seals and the court present themselves to the broker: MQTT client ids nobody else can take.

A broker keeps a persistent session (its queued messages) under the client id, and a second connection with the
same id takes the session over and closes the first one. An id that anyone can guess — a seal's device id, the
court's configured name — would let a client logged in with one seal's password take over another seal's session
or the court's (the broker then drops what the session receives, since the ACL does not let that account read it).
So the id carries a secret suffix derived from the account's own password: stable for the session, unguessable
without the password, and it works the same on any MQTT 5 broker (no ``use_username_as_clientid``, which would
also give the court's two connections one id).

The court's shared subscription group (``$share/<group>/…``, several ingest workers) is named the same way, for the
same reason: Mosquitto 2.0's ACL file cannot refuse a SUBSCRIBE (it checks "read" only when it delivers), so a seal
that names the court's group joins it, gets its turn in the group's round robin, and the message it may not read is
lost for the whole group. A group name only the court's password can compute keeps seals out of it.
"""

from __future__ import annotations

import hashlib
import hmac

#: Characters of the secret suffix (hex): 64 bits, far beyond guessing.
_SUFFIX_CHARS = 16


def mqtt_client_id(name: str, password: str) -> str:
    """``name`` followed by ``-`` and a suffix only the holder of ``password`` can compute."""
    digest = hmac.new(password.encode("utf-8"), b"court-seal mqtt client id\x00" + name.encode(), hashlib.sha256)
    return f"{name}-{digest.hexdigest()[:_SUFFIX_CHARS]}"


def mqtt_shared_group(name: str, password: str) -> str:
    """The broker's name of the shared subscription group ``name``: ``name``, ``-`` and a suffix only the holder of
    ``password`` can compute (another one than :func:`mqtt_client_id`'s)."""
    digest = hmac.new(password.encode("utf-8"), b"court-seal mqtt shared group\x00" + name.encode(), hashlib.sha256)
    return f"{name}-{digest.hexdigest()[:_SUFFIX_CHARS]}"
