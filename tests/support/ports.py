"""Free loopback ports for the servers a test starts."""

from __future__ import annotations

import socket

# The local stacks' fixed ports (base 17000 by default, 27000 for the test session's stack,
# each spanning base..base+999): an ephemeral port never lands there on Linux's default range.
STACK_PORTS = range(17000, 30000)


def free_port() -> int:
    """An ephemeral port from the kernel (nobody else's fixed port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    assert port not in STACK_PORTS, f"the kernel handed out {port}, inside the stacks' ports"
    return port
