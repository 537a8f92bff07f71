"""A free TCP port on 127.0.0.1, for a server that binds its own socket (a subprocess, redis,
aiosmtpd, a server stopped and started again on the same port).

The window between this close and the server's bind is the price: the OS does not hand the same
port out again at once. A server that can take a bound socket should (tests.support.servers).
"""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
