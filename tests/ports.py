"""Ports for servers a test starts as a separate process (which must bind by number).

Picked below the kernel's ephemeral range: a port taken with bind(0) and released can be handed
straight back to any process asking for an ephemeral port (the Temporal dev server binds several),
and the server under test then dies with "address already in use"."""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    top = min(_ephemeral_floor(), 32768) - 1
    for _ in range(200):
        port = random.randint(20000, top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found below the ephemeral range")
