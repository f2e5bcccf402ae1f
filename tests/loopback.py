"""Loopback ports for the servers and peers that tests start."""

import socket


def free_port() -> int:
    """A loopback port nobody listens on now: for a server to take, or to stand for a peer
    that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
