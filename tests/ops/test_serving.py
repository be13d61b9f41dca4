"""`hims serve --workers N` spreads connections over its workers (each listens on its own socket,
which needs Linux's SO_REUSEPORT: the platform hims is deployed and tested on)."""

from __future__ import annotations

import socket
import time

import psutil
import pytest

from tests.support import Server, base_env, free_port, wait_for_status


def _listening_workers(server: psutil.Process, port: int) -> dict[int, psutil.Process]:
    workers = {}
    for child in server.children(recursive=True):
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in child.net_connections()):
                workers[child.pid] = child
        except psutil.Error:
            continue
    return workers


@pytest.mark.slow
def test_a_burst_of_keep_alive_connections_is_shared_by_the_workers(
    database_url: str, redis_url: str, tmp_path
):
    port = free_port()
    env = base_env(tmp_path, DATABASE_URL=database_url, REDIS_URL=redis_url, HIMS_ENV="test")
    server = Server(["serve", "--workers", "2", "--port", str(port)], env, tmp_path / "server.log")
    clients: list[socket.socket] = []
    try:
        wait_for_status(f"http://127.0.0.1:{port}/health/ready", proc=server.proc)
        supervisor = psutil.Process(server.proc.pid)
        deadline = time.monotonic() + 30
        while len(workers := _listening_workers(supervisor, port)) < 2:
            assert time.monotonic() < deadline, "both workers must listen on the port"
            time.sleep(0.1)
        # 40 clients connect at once and keep their connections (as a proxy's keep-alive pool).
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        for client in clients:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: hims\r\n\r\n")
        for client in clients:
            assert client.recv(64).startswith(b"HTTP/1.1 200")
        held = {
            pid: sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port for c in connections)
            for pid, connections in ((pid, w.net_connections()) for pid, w in workers.items())
        }
        assert sum(held.values()) == 40
        # The kernel hashes connections over the two sockets: a 32/8 split or worse has odds of
        # about 1 in 10^5; one shared socket gave most of a burst to one worker.
        assert min(held.values()) >= 8, held
    finally:
        for client in clients:
            client.close()
        assert server.stop() == 0, server.log()[-2000:]
