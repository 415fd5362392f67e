"""The client's address, for the login throttle, the audit log and ``/metrics``: the socket's peer, unless that peer
is a trusted reverse proxy — or unknown.

Behind a proxy named in ``[http] trusted_proxies``, the address is taken from ``X-Forwarded-For``: walking it from
the right (the hop the trusted proxy itself appended), trusted addresses are skipped and the first one that is not
trusted is the client. Everything to its left was written by the client and is ignored, so a client cannot choose
its address by sending the header itself.

The client is *unknown* (``None``), never the proxy's own address, when:

- a trusted proxy names no client: no ``X-Forwarded-For`` (a proxy that does not append it: nginx does not by
  default), every hop a trusted address, or a hop that is not an address. Were it the proxy's address, every client
  behind it would share one login throttle (one stranger's wrong passwords would lock the whole court out) and
  ``[http] metrics_from`` would answer whoever the proxy serves;
- (``/metrics`` only) a peer that is *not* trusted sends forwarding headers (``X-Forwarded-For``, ``Forwarded``,
  ``X-Real-IP``): a proxy that was not listed in ``trusted_proxies``, or a client pretending. Its headers are
  ignored — the peer is the client, for the login throttle and the audit log, as without them (an address is never
  taken from a header unless the proxy is configured) — but the request came through something: it is not this
  machine's own for ``[http] metrics_from`` (a proxy here would otherwise serve ``/metrics`` to anyone).

An unknown client may not sign in, nor read ``/metrics``; :class:`ProxyWarnings` says why in the log, once per peer
and hour, and for headers from a peer not trusted too (all the clients of an unlisted proxy share its address, and
one throttle). A peer that is not trusted and sends no such header is the client.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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


#: Request headers by which a proxy names the client: any of them from a peer that is not trusted makes its client
#: unknown (only ``X-Forwarded-For`` is read from a trusted one).
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


@dataclass(frozen=True)
class Client:
    """Whom a request comes from: ``address``, or ``None`` if unknown; ``problem`` says why it is unknown, or, with an
    address, why the request is not to be taken as the peer's own (forwarding headers it sent: ignored, and logged)."""

    address: str | None
    problem: str = ""

    @property
    def direct(self) -> bool:
        """Known, and nothing says the request came through a proxy (what ``/metrics`` serves)."""
        return self.address is not None and not self.problem


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork], *, forwarding: bool = False
) -> Client:
    """The client: ``peer`` (the socket's), or, if ``peer`` is a trusted proxy, the right-most address of the
    ``X-Forwarded-For`` values (all such headers, in order) that is not a trusted proxy; unknown (the module
    docstring) if there is none. If ``peer`` is not trusted but the request carries ``forwarding`` headers (any of
    :data:`FORWARDING_HEADERS`, ``X-Forwarded-For`` included), they are ignored and the client is ``peer``, with a
    ``problem`` (not :attr:`Client.direct`)."""
    if peer is None:
        return Client(None, "no peer address")
    address = parse_address(peer)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if address is None or not is_trusted(address, trusted):
        itself = peer[:MAX_ADDRESS_LENGTH] if address is None else str(address)
        if forwarding or hops:  # ignored: the peer is the client; but not one of this machine's own (/metrics)
            return Client(itself, "forwarding headers from a peer not in [http] trusted_proxies (ignored)")
        return Client(itself)
    for hop in reversed(hops):
        parsed = parse_address(hop)
        if parsed is None:
            return Client(None, f"X-Forwarded-For hop {hop[:80]!r} is not an address")
        if not is_trusted(parsed, trusted):
            return Client(str(parsed))
    if not hops:
        return Client(None, "a trusted proxy sent no X-Forwarded-For")
    return Client(None, "every X-Forwarded-For hop is a trusted proxy")


#: How often :class:`ProxyWarnings` repeats its warning about one peer.
PROXY_WARNING_INTERVAL_S = 3600.0
#: How many peers :class:`ProxyWarnings` remembers (then it forgets them all: a few warnings more, no memory grown).
PROXY_WARNING_PEERS = 1024


class ProxyWarnings:
    """Logs, once per peer and problem every :data:`PROXY_WARNING_INTERVAL_S`, that a request's client is unknown
    because the reverse proxy is not configured as it must be (one per app: ``app.state.proxy_warnings``)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def warn(self, peer: str | None, client: Client) -> None:
        key = (str(peer)[:MAX_ADDRESS_LENGTH], client.problem)
        with self._lock:
            now, last = self._clock(), self._last.get(key)
            if last is not None and now - last < PROXY_WARNING_INTERVAL_S:
                return
            if len(self._last) >= PROXY_WARNING_PEERS:
                self._last.clear()
            self._last[key] = now
        refused = "/metrics is" if client.address is not None else "sign-in and /metrics are"
        logger.warning(
            "REVERSE PROXY NOT CONFIGURED: a request from %s is of unknown origin (%s): %s refused to it. The "
            "court's reverse proxy must be listed in [http] trusted_proxies (its exact address) "
            "and must append the client to X-Forwarded-For (nginx: proxy_set_header X-Forwarded-For "
            "$proxy_add_x_forwarded_for); see docs/deploy.md. (Repeated at most hourly for this peer.)",
            key[0],
            client.problem,
            refused,
        )


#: An IPv6 host commonly holds a whole /64 (SLAAC, privacy addresses): the throttle counts the prefix, not the address.
IPV6_THROTTLE_PREFIX = 64
#: One holder commonly has many /64s: a home line gets a /56 (256 of them) or a /48, an office or a tunnel broker's
#: free account a /48 (65,536; RFC 6177). The throttle counts an IPv6 address's failures in its /48 as well, so that
#: one holder cannot add up its /64s' limits. A /48 and not a /56: a /56 would leave a holder of a /48 (given for the
#: asking by tunnel brokers) 256 networks of its own, as many as the /64s of a /56 were.
IPV6_NETWORK_PREFIX = 48


def throttle_key(address: str) -> str:
    """What the login throttle counts an address as: an IPv4 address itself, an IPv6 address its /64 network."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_THROTTLE_PREFIX), strict=False))
    return address[:MAX_ADDRESS_LENGTH]


def throttle_network(address: str) -> str | None:
    """The wider network the login throttle counts an IPv6 address in too: its /48 (:data:`IPV6_NETWORK_PREFIX`);
    ``None`` for an IPv4 address (one address, counted as itself only) or a peer that is no address."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, IPV6_NETWORK_PREFIX), strict=False))
    return None
