"""Scraping real processes' /metrics endpoints in integration tests, and ports to give them."""

from __future__ import annotations

import socket
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from newsstream.stack.launchers import free_port


def free_port_range(count: int) -> int:
    """The first of ``count`` consecutive TCP ports on 127.0.0.1 that were free a moment ago."""
    for _ in range(50):
        base = free_port()
        if base + count > 65536:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports found")


def scrape(port: int) -> dict[str, list[Any]] | None:
    """The samples of ``http://127.0.0.1:port/metrics`` by sample name (None when nothing
    answers there); parsed with prometheus-client's own text parser."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3)
    except httpx.HTTPError:
        return None
    assert response.status_code == 200, response.text[:500]
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples
