"""The port the workers share: one SO_REUSEPORT listening socket per worker.

Why SO_REUSEPORT rather than one listening socket inherited by every worker: with a shared socket
every new connection wakes every worker's event loop and the first to call accept() wins, and
asyncio accepts up to its backlog per wake-up, so a burst of connections (a reconnect storm, a
room filling up) lands on whichever worker was idle at that instant. WebSockets live for hours,
so that skew stays. With one socket per worker the kernel spreads connections by a hash of the
address pair, evenly, and wakes only the worker that owns the chosen socket. The cost: the
connections still queued in a worker's backlog when it dies are reset (the clients reconnect, as
after any drain), and while it restarts its share goes to the others.

The supervisor binds a socket to the port without listening on it (`reserve`): a port in use fails
once, before any worker starts; port 0 is resolved to one port for all workers; and the port stays
held across worker restarts. A bound socket that does not listen receives no connections.
"""

from __future__ import annotations

import socket


def shared_socket(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` with SO_REUSEPORT: the supervisor's hold on the port (never
    listening), or a worker's own (uvicorn's `create_server` makes it listen). OSError when the
    port is taken by anything but giftwire's own reuse-port sockets."""
    family, kind, proto, _name, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
