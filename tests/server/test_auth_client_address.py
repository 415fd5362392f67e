"""The client's address behind (or without) a trusted reverse proxy, and the settings that name the proxies."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from server.auth.client_address import PROXY_WARNING_INTERVAL_S, ProxyWarnings, client_address
from server.config import AuthSettings, HttpSettings, parse_settings
from server.errors import ConfigError

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "want"),
    [
        ("198.51.100.1", [], [], "198.51.100.1"),  # no proxy: the socket's peer
        ("198.51.100.1", ["192.0.2.1"], [], "198.51.100.1"),  # no proxies trusted: the header is ignored
        ("198.51.100.1", ["192.0.2.1"], TRUSTED, "198.51.100.1"),  # the peer is no proxy of ours
        ("10.1.2.3", ["192.0.2.1, 203.0.113.5"], TRUSTED, "203.0.113.5"),  # the hop our proxy appended
        ("10.1.2.3", ["192.0.2.1, 203.0.113.5, 10.9.9.9"], TRUSTED, "203.0.113.5"),  # through two proxies
        ("10.1.2.3", ["192.0.2.1", "203.0.113.5"], TRUSTED, "203.0.113.5"),  # two headers are one list
        ("10.1.2.3", [], TRUSTED, None),  # a proxy that does not append: not the proxy's own address
        ("10.1.2.3", ["10.4.4.4, 10.5.5.5"], TRUSTED, None),  # only proxies: no client named
        ("10.1.2.3", ["203.0.113.5, garbage"], TRUSTED, None),  # a hop no trusted proxy wrote
        ("2001:db8::7", ["2001:DB8:0:0::9, 2a00:1450::1"], TRUSTED, "2a00:1450::1"),
        ("::ffff:10.1.2.3", ["::ffff:203.0.113.5"], TRUSTED, "203.0.113.5"),  # IPv4-mapped is IPv4
        ("testclient", [], TRUSTED, "testclient"),  # not an address at all: kept as it is
        ("testclient", ["192.0.2.1"], TRUSTED, "testclient"),
        (None, ["192.0.2.1"], TRUSTED, None),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], trusted: list[object], want: str | None) -> None:
    assert client_address(peer, forwarded, trusted).address == want  # type: ignore[arg-type]


def test_forwarding_headers_from_a_peer_not_trusted_are_ignored_but_said() -> None:
    """The peer is the client whatever it sends; but a request with such headers is not this machine's own."""
    for headers in ({"forwarding": True}, {}):
        sent = client_address("198.51.100.1", ["192.0.2.1"] if not headers else [], TRUSTED, **headers)
        assert sent.address == "198.51.100.1" and sent.problem and not sent.direct
    assert client_address("198.51.100.1", [], TRUSTED).direct
    assert client_address("10.1.2.3", [], TRUSTED, forwarding=True).address is None  # Forwarded is not read


def test_the_warning_about_a_proxy_is_said_once_per_peer_and_hour(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    warnings = ProxyWarnings(clock=lambda: now[0])
    unknown = client_address("10.1.2.3", [], TRUSTED)
    with caplog.at_level(logging.WARNING, logger="server.auth.client_address"):
        for _ in range(3):
            warnings.warn("10.1.2.3", unknown)
        warnings.warn("10.1.2.4", unknown)
        now[0] = PROXY_WARNING_INTERVAL_S
        warnings.warn("10.1.2.3", unknown)
    said = [record.getMessage() for record in caplog.records]
    assert len(said) == 3 and all("REVERSE PROXY NOT CONFIGURED" in line for line in said)
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in said[0] and "a trusted proxy sent no" in said[0]


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert HttpSettings().trusted_proxies == ()
    proxies = HttpSettings(trusted_proxies=["10.0.0.1", "192.168.0.0/16", "::1"]).trusted_proxies  # type: ignore[list-item]
    assert [str(p) for p in proxies] == ["10.0.0.1/32", "192.168.0.0/16", "::1/128"]


@pytest.mark.parametrize(
    ("http", "auth", "where"),
    [
        ({"trusted_proxies": ["proxy.example"]}, {}, "http.trusted_proxies"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, {}, "http.trusted_proxies"),  # host bits set: a typo, refused
        ({}, {"login_max_failures": 5, "login_user_max_failures": 5}, "login_user_max_failures"),
        ({}, {"login_network_max_failures": 100}, "must exceed login_network_max_failures"),
        ({}, {"login_user_window_s": 301}, r"login_network_max_failures × 2"),  # one /48 reaches 2 × 50 in 301 s
        ({}, {"login_address_max_failures": 0}, "auth.login_address_max_failures"),
    ],
)
def test_invalid_login_settings_name_the_field(http: dict[str, object], auth: dict[str, object], where: str) -> None:
    data = {
        "database_url": "sqlite://",
        "snapshot_dir": "s",
        "mqtt": {"password_file": "p"},
        "http": http,
        "auth": auth,
    }
    with pytest.raises(ConfigError, match=where):
        parse_settings(data, env={})


def test_the_user_brake_is_looser_than_one_address_can_reach() -> None:
    settings = AuthSettings()
    assert settings.login_user_max_failures > settings.login_network_max_failures
    assert settings.login_network_max_failures > settings.login_address_max_failures > settings.login_max_failures
    assert settings.login_user_window_s < settings.login_window_s
