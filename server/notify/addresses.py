"""Where a webhook may go: never to the court's own loopback, a link-local address (the cloud metadata service at
169.254.169.254 is one), an unspecified or a multicast address.

A target whose host is such an address is refused when it is added (:func:`check_target_host`); a name is resolved
when each webhook is sent, and the webhook goes only to an address that passes (:func:`resolve_target`) — a name that
pointed elsewhere when it was added and at the court now (DNS rebinding) is refused then. Private ranges (10/8,
172.16/12, 192.168/16, fc00::/7) are allowed unless ``[notify] allow_private_targets`` is false: a court's own
notification relay is often internal. ``[notify] allow_loopback_targets`` lets tests post to a local receiver.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass

from server.config import NotifySettings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Metadata services outside the link-local ranges (AWS over IPv6, Alibaba Cloud).
METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
#: What each refusal is called, in Chinese and in English.
KINDS = {
    "unspecified": ("未指定地址", "an unspecified address"),
    "loopback": ("本机回环地址", "a loopback address (the court's own host)"),
    "link-local": ("链路本地地址（含云元数据地址 169.254.169.254）", "a link-local address (like 169.254.169.254)"),
    "metadata": ("云元数据服务地址", "a cloud metadata service address"),
    "multicast": ("组播地址", "a multicast address"),
    "private": ("内网地址（[notify] allow_private_targets 为 false）", "a private address (allow_private_targets)"),
}
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


class RefusedAddress(OSError, ValueError):
    """A webhook target's host is (or resolves only to) an address webhooks must not go to."""

    def __init__(self, host: str, address: str, kind: str) -> None:
        zh, en = KINDS[kind]
        shown = host if host == address else f"{host} ({address})"
        super().__init__(f"通知目标 {shown} 是{zh}，不能接收告警通知。A webhook must not go to {shown}: it is {en}.")


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses a webhook may go to (the :mod:`module <server.notify.addresses>` says which are refused)."""

    allow_loopback: bool = False
    allow_private: bool = True

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> AddressPolicy:
        return cls(allow_loopback=settings.allow_loopback_targets, allow_private=settings.allow_private_targets)

    def refusal(self, address: IpAddress) -> str | None:
        """Why a webhook must not go to ``address`` (a key of :data:`KINDS`), or ``None``."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_unspecified or address in THIS_NETWORK:
            return "unspecified"
        if address.is_loopback:
            return None if self.allow_loopback else "loopback"
        if address.is_link_local:
            return "link-local"
        if address in METADATA:
            return "metadata"
        if address.is_multicast:
            return "multicast"
        if address.is_private and not self.allow_private:
            return "private"
        return None


#: The default: no loopback, private ranges allowed.
DEFAULT_POLICY = AddressPolicy()


def check_target_host(host: str, policy: AddressPolicy) -> None:
    """Raise :class:`RefusedAddress` if ``host`` (a URL's host name) is a literal address, or ``localhost``, that a
    webhook must not go to. Other names are checked when sending (:func:`resolve_target`)."""
    name = host.lower().rstrip(".")
    if (name == "localhost" or name.endswith(".localhost")) and not policy.allow_loopback:
        raise RefusedAddress(host, host, "loopback")
    literal = _literal(host)
    if literal is not None and (kind := policy.refusal(literal)) is not None:
        raise RefusedAddress(host, str(literal), kind)


def resolve_target(host: str, port: int, policy: AddressPolicy, *, deadline: float) -> str:
    """The address to connect to for ``host``: the first it resolves to that ``policy`` allows. Raise
    :class:`RefusedAddress` if there is none, ``TimeoutError`` if resolving outlasts ``deadline``
    (``time.monotonic()``), ``OSError`` if the name does not resolve."""
    check_target_host(host, policy)
    literal = _literal(host)
    if literal is not None:
        return str(literal)
    addresses = [ipaddress.ip_address(a) for a in _getaddrinfo(host, port, deadline)]
    for address in addresses:
        if policy.refusal(address) is None:
            return str(address)
    first = addresses[0]
    raise RefusedAddress(host, str(first), policy.refusal(first) or "unspecified")


def _literal(host: str) -> IpAddress | None:
    """``host`` as an IP address, also in the legacy IPv4 spellings resolvers accept (``2130706433``, ``127.1``)."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _getaddrinfo(host: str, port: int, deadline: float) -> list[str]:
    """The addresses of ``socket.getaddrinfo``, given up at ``deadline``: the resolver's own timeouts are the
    system's, not ours. The lookup's thread is left to finish by itself."""
    outcome: list[object] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append([str(info[4][0]).split("%", 1)[0] for info in infos])
        except OSError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=lookup, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(max(deadline - time.monotonic(), 0.0))
    if not outcome:
        raise TimeoutError(f"resolving {host} took too long")
    result = outcome[0]
    if isinstance(result, OSError):
        raise result
    if not result:
        raise OSError(f"{host} resolves to no address")
    return result  # type: ignore[return-value]
