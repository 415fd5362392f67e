"""The client's address, for the login throttle and the audit log: the socket's peer, unless that peer is a trusted
reverse proxy.

Behind a proxy named in ``[http] trusted_proxies``, the address is taken from ``X-Forwarded-For``: walking it from
the right (the hop the trusted proxy itself appended), trusted addresses are skipped and the first one that is not
trusted is the client. Everything to its left was written by the client and is ignored, so a client cannot choose
its address by sending the header itself. A peer that is not trusted is the client, whatever headers it sends.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Longest address kept (the width of the ``client_ip`` columns).
MAX_ADDRESS_LENGTH = 64


def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (an IPv4-mapped IPv6 address as the IPv4 one), or ``None``."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: IPAddress | None, trusted: Sequence[IPNetwork]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in trusted)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]) -> str:
    """The client's address: ``peer`` (the socket's), or, if ``peer`` is a trusted proxy, the right-most address of
    the ``X-Forwarded-For`` values (all such headers, in order) that is not a trusted proxy.

    A hop that is not an IP address ends the walk at the last trusted one (nobody trustworthy wrote it)."""
    if peer is None:
        return "unknown"
    address = parse_address(peer)
    if address is None:
        return peer[:MAX_ADDRESS_LENGTH]
    if not is_trusted(address, trusted):
        return str(address)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    current = address
    for hop in reversed(hops):
        parsed = parse_address(hop)
        if parsed is None:
            logger.warning("X-Forwarded-For hop %r is not an address: using the proxy's %s", hop[:80], current)
            return str(current)
        if not is_trusted(parsed, trusted):
            return str(parsed)
        current = parsed
    return str(current)  # every hop is a proxy of ours: the left-most one is the nearest thing to a client


#: An IPv6 host commonly holds a whole /64 (SLAAC, privacy addresses): the throttle counts the prefix, not the address.
IPV6_THROTTLE_PREFIX = 64


def throttle_key(address: str) -> str:
    """What the login throttle counts an address as: an IPv4 address itself, an IPv6 address its /64 network."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_THROTTLE_PREFIX), strict=False))
    return address[:MAX_ADDRESS_LENGTH]
