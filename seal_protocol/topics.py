"""MQTT topics of the seal protocol, version 1. The only place topic strings are built or parsed.

Layout: ``seal/v1/<device_id>/<kind>[/<sha256>]`` where kind is one of :class:`MessageKind`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from seal_protocol.errors import InvalidTopic

TOPIC_ROOT = "seal/v1"

#: A device id is also the seal's MQTT username (the broker ACL uses ``%u``), so it is kept to a safe alphabet
#: that can never contain MQTT wildcards or separators.
DEVICE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: The largest snapshot (JPEG bytes, the payload of a ``snapshot`` message) the court's broker accepts
#: (Mosquitto's ``message_size_limit``: a bigger PUBLISH closes the connection) and its ingest stores.
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024


class MessageKind(StrEnum):
    EVENT = "event"  # device -> court, QoS 1, signed envelope
    STATUS = "status"  # device -> court, retained "online"/"offline" (the offline one is the Last Will)
    CMD = "cmd"  # court -> device, signed command
    SNAPSHOT = "snapshot"  # device -> court, JPEG bytes, topic ends with the image's SHA-256
    RECEIPT = "receipt"  # court -> device, signed list of the hashes of messages the court committed


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    device_id: str
    kind: MessageKind
    sha256: str | None = None


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` if it is a valid seal id, else raise :class:`InvalidTopic`."""
    if not isinstance(device_id, str) or not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise InvalidTopic(f"invalid device id {device_id!r}: use 1-64 of a-z 0-9 _ -, starting with a letter or digit")
    return device_id


def _topic(device_id: str, kind: MessageKind) -> str:
    return f"{TOPIC_ROOT}/{validate_device_id(device_id)}/{kind.value}"


def event_topic(device_id: str) -> str:
    return _topic(device_id, MessageKind.EVENT)


def status_topic(device_id: str) -> str:
    return _topic(device_id, MessageKind.STATUS)


def cmd_topic(device_id: str) -> str:
    return _topic(device_id, MessageKind.CMD)


def receipt_topic(device_id: str) -> str:
    return _topic(device_id, MessageKind.RECEIPT)


def snapshot_topic(device_id: str, sha256: str) -> str:
    if not _SHA256_PATTERN.fullmatch(sha256):
        raise InvalidTopic(f"invalid snapshot hash {sha256!r}: expected 64 lowercase hex digits")
    return f"{_topic(device_id, MessageKind.SNAPSHOT)}/{sha256}"


def topic_filter(kind: MessageKind, device: str = "+") -> str:
    """A filter matching ``kind`` messages of ``device``: a device id, ``+`` (every seal) or, in a Mosquitto ACL
    pattern, ``%u`` (the authenticated username, which is the seal's device id)."""
    if device not in ("+", "%u"):
        validate_device_id(device)
    suffix = "/+" if kind is MessageKind.SNAPSHOT else ""
    return f"{TOPIC_ROOT}/{device}/{kind.value}{suffix}"


def subscription_all(kind: MessageKind) -> str:
    """The subscription filter that matches ``kind`` messages of every seal."""
    return topic_filter(kind)


def topic_account(topic: str) -> str | None:
    """The device id a topic ``seal/v1/<device_id>/…`` is under (with any levels below it, parsed or not), if it is a
    valid one; else None. The broker ACL lets a seal's account publish only under its own username, its device id
    (``%u``): this names the account that published a message even when :func:`parse_topic` refuses its topic."""
    root, _, rest = topic.partition(f"{TOPIC_ROOT}/")
    device_id, slash, _ = rest.partition("/")
    if root or not slash or not DEVICE_ID_PATTERN.fullmatch(device_id):
        return None
    return device_id


def parse_topic(topic: str) -> ParsedTopic:
    """Parse a concrete (wildcard-free) topic; raise :class:`InvalidTopic` if it is not a seal topic."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise InvalidTopic(f"not a {TOPIC_ROOT} topic: {topic!r}")
    device_id = validate_device_id(parts[2])
    try:
        kind = MessageKind(parts[3])
    except ValueError:
        raise InvalidTopic(f"unknown message kind {parts[3]!r} in topic {topic!r}") from None
    if kind is MessageKind.SNAPSHOT:
        if len(parts) != 5 or not _SHA256_PATTERN.fullmatch(parts[4]):
            raise InvalidTopic(f"snapshot topic must end with a SHA-256: {topic!r}")
        return ParsedTopic(device_id, kind, parts[4])
    if len(parts) != 4:
        raise InvalidTopic(f"unexpected topic levels in {topic!r}")
    return ParsedTopic(device_id, kind)
