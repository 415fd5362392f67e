"""An ingest worker's own /metrics (``[ingest] metrics_port``): served by prometheus_client's HTTP server on the
configured address, its scrape-time gauges set at each scrape, selectable by name; a port already taken is a clear
configuration error, not a worker that runs without its metrics, and a host name that does not resolve is said so,
not taken for a busy port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from seal_dev.broker import free_port
from server.core.metrics import IngestMetrics
from server.core.metrics_http import MetricsEndpoint, check_can_listen
from server.core.progress import IngestProgress
from server.errors import ConfigError
from tests.prometheus import samples


def _idle_endpoint(port: int, host: str = "127.0.0.1") -> MetricsEndpoint:
    """An endpoint on ``host``:``port`` of a worker with nothing counted (not started)."""
    return MetricsEndpoint(
        host,
        port,
        IngestMetrics(seal_gauges=False),
        broker_connected=lambda: True,
        progress=lambda: IngestProgress(0, 0.0, None),
        reasons=[],
    )


@pytest.fixture
def endpoint() -> Iterator[tuple[MetricsEndpoint, IngestMetrics, list[bool]]]:
    metrics = IngestMetrics(seal_gauges=False)
    connected = [False]
    instance = MetricsEndpoint(
        "127.0.0.1",
        free_port(),
        metrics,
        broker_connected=lambda: connected[0],
        progress=lambda: IngestProgress(3, 1.5, None, 4096),
        reasons=["bad_signature"],
    )
    instance.start()
    try:
        yield instance, metrics, connected
    finally:
        instance.stop()


def test_a_worker_serves_its_counters_gauges_and_histogram(
    endpoint: tuple[MetricsEndpoint, IngestMetrics, list[bool]],
) -> None:
    instance, metrics, connected = endpoint
    metrics.count_stored()
    metrics.count_rejected("wrong_case")
    metrics.commit_latency.observe(0.02)
    url = f"http://{instance.host}:{instance.port}/metrics"

    first = samples(httpx.get(url).text)
    connected[0] = True
    second = samples(httpx.get(url).text)

    assert first["seal_events_ingested_total"] == 1.0
    assert first['seal_messages_rejected_total{reason="wrong_case"}'] == 1.0
    assert first['seal_messages_rejected_total{reason="bad_signature"}'] == 0.0  # every known reason is listed
    assert first["seal_ingest_commit_seconds_count"] == 1.0
    assert first["seal_ingest_unstored_messages"] == 3.0 and first["seal_ingest_oldest_unstored_seconds"] == 1.5
    assert first["seal_ingest_unstored_bytes"] == 4096.0
    assert (first["seal_broker_connected"], second["seal_broker_connected"]) == (0.0, 1.0)  # set at each scrape
    assert "seal_seals_online" not in first
    only = samples(httpx.get(url, params={"name[]": "seal_events_ingested_total"}).text)
    assert only == {"seal_events_ingested_total": 1.0}


def test_a_metrics_port_already_taken_is_a_configuration_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        endpoint = _idle_endpoint(port)
        with pytest.raises(ConfigError, match=rf"\[ingest\] metrics: cannot listen on 127.0.0.1:{port}") as raised:
            endpoint.start()
    assert "(另一个进程占用了该端口？/ is another process using the port?)" in str(raised.value)


def test_the_check_of_a_port_finds_a_taken_one_and_leaves_a_free_one_free(
    endpoint: tuple[MetricsEndpoint, IngestMetrics, list[bool]],
) -> None:
    """What ``seal-server ingest --workers N`` checks before starting any worker: the port of a running endpoint is
    refused as its start would refuse it; a free port passes, and is still free for the endpoint to listen on."""
    running = endpoint[0]
    with pytest.raises(ConfigError, match=rf"\[ingest\] metrics: cannot listen on 127.0.0.1:{running.port}"):
        check_can_listen("127.0.0.1", running.port)
    port = free_port()
    check_can_listen("127.0.0.1", port)
    after = _idle_endpoint(port)
    after.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    finally:
        after.stop()


@pytest.mark.parametrize("host", ["no-such-host.invalid", "a..b"], ids=["unknown-name", "no-name-at-all"])
def test_a_metrics_host_that_does_not_resolve_is_said_so_not_taken_for_a_busy_port(host: str) -> None:
    """A name no resolver knows (``.invalid`` never resolves, RFC 2606), or one no DNS label can spell (``a..b``,
    which Python's resolver refused with a UnicodeError, not a socket error): the check before the workers start and
    the worker's own start say the host name does not resolve, Chinese first; neither guesses at a busy port."""
    port = free_port()
    for attempt in (lambda: check_can_listen(host, port), _idle_endpoint(port, host).start):
        with pytest.raises(ConfigError) as raised:
            attempt()
        said = str(raised.value)
        assert said.startswith(f"[ingest] metrics: cannot listen on {host}:{port}: "), said
        assert "(无法解析该主机名，请检查 [ingest] metrics_host / the host name does not resolve" in said, said
        assert "端口" not in said and "port?" not in said, said


def test_an_address_not_of_this_machine_is_said_so() -> None:
    """192.0.2.1 (TEST-NET-1, RFC 5737) is no address of any machine's own: not a busy port either."""
    port = free_port()
    with pytest.raises(ConfigError) as raised:
        check_can_listen("192.0.2.1", port)
    said = str(raised.value)
    assert "(该地址不属于本机，请检查 [ingest] metrics_host / the address is not this machine's" in said, said
    assert "端口" not in said, said
