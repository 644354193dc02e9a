"""The unit layer's guard: a unit test that starts a process, opens a network socket or loads
the model fails with a message that says to move it to tests/integration."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest

from core.settings import Settings
from embedding.embedder import Embedder

from conftest import UnitLayerViolation


def test_a_subprocess_is_refused() -> None:
    with pytest.raises(UnitLayerViolation, match="tests/integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(UnitLayerViolation):
        os.system("true")


def test_a_multiprocessing_worker_is_refused() -> None:
    context = multiprocessing.get_context("spawn")
    with pytest.raises(UnitLayerViolation):
        context.Process(target=print).start()


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_network_sockets_can_neither_connect_nor_listen(family: socket.AddressFamily) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with pytest.raises(UnitLayerViolation):
            sock.bind((host, 0))
        with pytest.raises(UnitLayerViolation):
            sock.connect((host, 9))
        with pytest.raises(UnitLayerViolation):
            sock.connect_ex((host, 9))
    with socket.socket(family, socket.SOCK_DGRAM) as udp, pytest.raises(UnitLayerViolation):
        udp.sendto(b"x", (host, 9))


def test_unix_socketpairs_and_event_loops_still_work() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"ping")
        assert right.recv(4) == b"ping"
    assert asyncio.run(asyncio.sleep(0, result="done")) == "done"


def test_loading_the_model_is_refused() -> None:
    with pytest.raises(UnitLayerViolation, match="embedding model"):
        Embedder(Settings())
