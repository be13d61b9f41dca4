"""`hims serve --workers N`: uvicorn's worker supervisor, each worker on a listening socket of its own.

uvicorn binds one socket and shares it with every worker. New connections then go to whichever
worker's event loop wakes first, and a burst of them (a load balancer opening its keep-alive
pool, 50 clients starting together) lands mostly on one worker. Keep-alive connections stay
where they landed: bench/fhir_crud.py's 50 users split 37 to 13, and the busy worker's
requests waited three times longer (82 against 28 ms on average).

On Linux each worker here opens its own socket in the port's SO_REUSEPORT group, and the kernel
spreads connections over the group's listening sockets by their addresses, so a burst divides
evenly. The supervisor's own socket, bound first so that a port in use fails the start, never
listens. Elsewhere the shared socket is kept.
"""

from __future__ import annotations

import socket
import sys

from uvicorn import Config
from uvicorn.supervisors import multiprocess


def reuse_port_available() -> bool:
    """Whether workers can have sockets of their own (Linux's load-balancing SO_REUSEPORT)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` in the port's SO_REUSEPORT group (not yet listening)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class OwnSocketProcess(multiprocess.Process):
    """A uvicorn worker that serves on a socket of its own instead of the supervisor's."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        for shared in sockets or ():
            shared.close()
        super().target([port_socket(self.config.host, self.config.port)])


def run_workers(config: Config) -> None:
    """Run ``config.workers`` workers under uvicorn's supervisor, each on its own socket."""
    reserved = port_socket(config.host, config.port)
    multiprocess.Process = OwnSocketProcess  # type: ignore[misc]
    try:
        multiprocess.Multiprocess(config, sockets=[reserved]).run()
    finally:
        reserved.close()
