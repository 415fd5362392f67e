"""What the notification worker remembers of each receiver: a circuit breaker per target (host and port).

A receiver is known by its host and port (:func:`target_key`), not by its URL: a firewall that drops packets, or a
relay that hangs, fails every URL behind it alike. After a failed send the target's breaker is *open* for the back-off
of its consecutive failures: none of its notifications is sent meanwhile (the worker records each as a failed attempt
without a request). Then it is *half-open*: its next chain is a trial, and runs only on the few threads kept for
suspect targets. A delivered notification closes it (the target is known *good*). A target never heard from is
neither good nor failing. This memory is the worker's own (a pure object, no I/O), lost when the process ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit


def target_key(url: str) -> str:
    """``host:port`` of a webhook URL (the scheme's port if none is given, the host in lower case): the receiver
    that a breaker guards. A URL that does not parse is its own key."""
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower(), 0)
    except ValueError:
        return url
    if not parts.hostname:
        return url
    host = parts.hostname.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Standing(StrEnum):
    UNKNOWN = "unknown"  # never heard from by this worker
    GOOD = "good"  # its last send was delivered
    OPEN = "open"  # failed; left alone until its back-off ends
    HALF_OPEN = "half_open"  # failed; its back-off has ended: the next send is a trial


@dataclass
class _Failing:
    failures: int
    open_until: float  # seconds of the worker's clock
    error: str
    urls: set[str] = field(default_factory=set)


class TargetHealth:
    """The breakers of the targets one worker sends to. Times are seconds of the worker's clock."""

    def __init__(self) -> None:
        self._failing: dict[str, _Failing] = {}
        self._good: set[str] = set()

    def standing(self, key: str, now: float) -> Standing:
        failing = self._failing.get(key)
        if failing is not None:
            return Standing.OPEN if now < failing.open_until else Standing.HALF_OPEN
        return Standing.GOOD if key in self._good else Standing.UNKNOWN

    def failed(self, key: str, url: str, error: str, now: float, backoff: float) -> int:
        """Record a failed send to ``url``: open the breaker of ``key`` for ``backoff`` seconds. Return its
        consecutive failures, this one included (the caller's back-off grows with them)."""
        self._good.discard(key)
        failing = self._failing.setdefault(key, _Failing(0, now, error))
        failing.failures += 1
        failing.open_until = now + backoff
        failing.error = error
        failing.urls.add(url)
        return failing.failures

    def failures(self, key: str) -> int:
        failing = self._failing.get(key)
        return failing.failures if failing is not None else 0

    def delivered(self, key: str) -> None:
        """A send to ``key`` was delivered: close its breaker."""
        self._failing.pop(key, None)
        self._good.add(key)

    def learn_url(self, key: str, url: str) -> None:
        """``url`` is one more URL of the failing target ``key`` (the claim leaves its rows out)."""
        failing = self._failing.get(key)
        if failing is not None:
            failing.urls.add(url)

    def why(self, key: str) -> str:
        """The last error of a failing target (for the notifications recorded failed without a request)."""
        failing = self._failing.get(key)
        return failing.error if failing is not None else ""

    def failing_urls(self) -> set[str]:
        """The URLs seen of every failing target."""
        return {url for failing in self._failing.values() for url in failing.urls}
