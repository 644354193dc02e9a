"""The fetcher's SSRF guard: address rules and schemes (connections: test_fetcher_ssrf_connect)."""

from __future__ import annotations

import ipaddress

import pytest

from core.errors import FeedError
from producers.fetcher import Fetcher, address_is_public, check_address, parse_networks

BLOCKED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "127.8.8.8",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.100.100.200",
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::",
    "2001:db8::1",
]


@pytest.mark.parametrize("address", BLOCKED)
def test_non_public_addresses_are_blocked(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not address_is_public(ip)
    with pytest.raises(FeedError) as info:
        check_address(ip)
    assert info.value.kind == "blocked"


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    check_address(ipaddress.ip_address(address))


def test_allowlist_admits_its_network_and_port_only() -> None:
    allow = parse_networks(["127.0.0.1:8080", "10.1.0.0/16", "[::1]:9000"])
    check_address(ipaddress.ip_address("127.0.0.1"), allow, 8080)
    check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allow, 8080)
    check_address(ipaddress.ip_address("10.1.2.3"), allow, 443)
    check_address(ipaddress.ip_address("::1"), allow, 9000)
    for address, port in [("127.0.0.1", 8081), ("10.2.0.1", 443), ("::1", 9001)]:
        with pytest.raises(FeedError):
            check_address(ipaddress.ip_address(address), allow, port)
    with pytest.raises(ValueError):
        parse_networks(["127.0.0.1:http"])


@pytest.mark.parametrize(
    "scheme_url", ["file:///etc/passwd", "ftp://example.com/feed", "gopher://x"]
)
def test_only_http_and_https(scheme_url: str) -> None:
    with pytest.raises(FeedError) as info:
        Fetcher().fetch(scheme_url)
    assert info.value.kind == "blocked"
