"""``/metrics`` of a process that serves no pages (a ``seal-server ingest`` worker): prometheus_client's own HTTP
server on ``[ingest] metrics_host`` (127.0.0.1 unless configured) and a port of the worker's own.

Each worker is a Prometheus target of its own (``instance`` tells them apart): counters, gauges and histograms are
each process's, exact, and Prometheus adds them up (``sum without (instance) (…)``). The gauges only a scrape knows
(the broker connection, the messages not yet stored) are set by a collector just before the registry is read.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from server.core.metrics import IngestMetrics
from server.core.progress import IngestProgress
from server.errors import ConfigError

logger = logging.getLogger(__name__)


class _ScrapeTime(Collector):
    """The registry of ``metrics``, its scrape-time gauges set first."""

    def __init__(
        self,
        metrics: IngestMetrics,
        *,
        broker_connected: Callable[[], bool],
        progress: Callable[[], IngestProgress],
        reasons: Iterable[str],
    ) -> None:
        self.metrics = metrics
        self.broker_connected = broker_connected
        self.progress = progress
        self.reasons = list(reasons)

    def collect(self) -> Iterable[Metric]:
        self.metrics.set_scrape_gauges(
            broker_connected=self.broker_connected(), reasons=self.reasons, progress=self.progress()
        )
        return self.metrics.registry.collect()


class MetricsEndpoint:
    """GET ``http://host:port/metrics`` (Prometheus text format) until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: IngestMetrics,
        *,
        broker_connected: Callable[[], bool],
        progress: Callable[[], IngestProgress],
        reasons: Iterable[str],
    ) -> None:
        self.host = host
        self.port = port
        # A registry around the collector (not the collector itself), which learns the names of its metrics by
        # collecting them once: it answers ``?name[]=…`` queries too.
        self._registry = CollectorRegistry(auto_describe=True)
        self._registry.register(
            _ScrapeTime(metrics, broker_connected=broker_connected, progress=progress, reasons=reasons)
        )
        self._server: WSGIServer | None = None

    def start(self) -> None:
        """Listen; raise :class:`ConfigError` if the address cannot be bound (in use, not this machine's, a host
        name that does not resolve)."""
        try:
            self._server, _thread = start_http_server(self.port, addr=self.host, registry=self._registry)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a name no DNS label can spell ("a..b")
            raise ConfigError(_cannot_listen(self.host, self.port, exc)) from None
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def check_can_listen(host: str, port: int) -> None:
    """Raise :class:`ConfigError` (as :meth:`MetricsEndpoint.start` would) if ``host``:``port`` cannot be listened
    on now: a socket is bound there as prometheus_client's server binds it (the address family ``host`` resolves
    to first, ``SO_REUSEADDR``: a port whose last connections are in TIME_WAIT is free), then closed at once. So
    that ``seal-server ingest --workers N`` finds a busy port before it starts any worker; another process may
    still take the port before the worker listens, and that worker then fails as it would have."""
    try:
        family, _type, _proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except (OSError, UnicodeError) as exc:  # socket.gaierror too: a host name that does not resolve
        raise ConfigError(_cannot_listen(host, port, exc)) from None


def _cannot_listen(host: str, port: int, exc: OSError | UnicodeError) -> str:
    """Why ``host``:``port`` cannot be listened on, with the likely cause, Chinese first, where the error names one:
    a host name that does not resolve is no busy port, and a busy port no wrong address."""
    what = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    if isinstance(exc, socket.gaierror | UnicodeError):
        hint = _UNRESOLVED
    else:
        hint = _HINTS.get(exc.errno or 0, "")
    return f"[ingest] metrics: cannot listen on {host}:{port}: {what}" + (f" ({hint})" if hint else "")


_UNRESOLVED = (
    "无法解析该主机名，请检查 [ingest] metrics_host / the host name does not resolve: check [ingest] metrics_host"
)
#: The likely cause of a socket error, by its errno; other errors are said as they are, without a guess.
_HINTS = {
    errno.EADDRINUSE: "另一个进程占用了该端口？/ is another process using the port?",
    errno.EADDRNOTAVAIL: (
        "该地址不属于本机，请检查 [ingest] metrics_host / "
        "the address is not this machine's: check [ingest] metrics_host"
    ),
}
