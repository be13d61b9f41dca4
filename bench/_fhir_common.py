"""Shared helpers for the load benchmarks: fresh databases, source trees (this checkout or another
git revision checked out aside), `hims serve` processes, a minimal keep-alive HTTP client, a CPU
meter and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil

from hims.ops import migrate

SERVER = os.environ.get("HIMS_BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


_CREATED: set[str] = set()


# ---------------------------------------------------------------------------------------------
# source trees


@dataclass(frozen=True)
class Tree:
    """A source tree whose hims a bench runs: this checkout, or a revision checked out aside.

    Every step that touches a tree's database (migrate, import, token, serve) runs in a child
    process of this virtual environment's Python with ``PYTHONPATH=<root>/src`` first, so that
    tree's ``hims`` package is imported, never the editable install's (`bench/_in_tree.py` checks).
    """

    label: str
    root: Path
    commit: str

    @property
    def src(self) -> Path:
        """The directory holding the tree's ``hims`` package."""
        return self.root / "src"

    @property
    def slug(self) -> str:
        """A name part for databases: ``current`` or ``ref``."""
        return "current" if self.root == ROOT else "ref"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child running this tree's hims."""
        path = os.pathsep.join(p for p in (str(self.src), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, "HIMS_BENCH_SRC": str(self.src), **extra}

    def argv(self, *args: str) -> list[str]:
        """The command line of a `bench/_in_tree.py` step (the tree's own copy of bench/ is not
        used: the steps are this checkout's, the hims they import is the tree's)."""
        return [sys.executable, str(BENCH / "_in_tree.py"), *args]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def current_tree() -> Tree:
    """This checkout (its working tree, uncommitted changes included)."""
    commit = _git("rev-parse", "--short", "HEAD")
    if _git("status", "--porcelain", "--", "src"):
        commit += " + uncommitted changes in src/"
    return Tree("current", ROOT, commit)


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Tree]:
    """``ref`` checked out in a detached git worktree in a temporary directory, removed at the end
    (also on Ctrl-C or an error)."""
    try:
        commit = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--compare {ref}: no such git revision") from None
    tmp = Path(tempfile.mkdtemp(prefix="hims-bench-ref-"))
    try:
        _git("worktree", "add", "--detach", str(tmp), commit)
        tree = Tree(ref, tmp, commit[:7])
        if not (tree.src / "hims" / "__init__.py").is_file():
            raise SystemExit(f"--compare {ref}: that revision has no src/hims package")
        differ = dependency_changes(ROOT / "pyproject.toml", tmp / "pyproject.toml")
        if differ:
            print(
                f"note: {ref} declares other dependencies than this checkout ({'; '.join(differ)}); it runs "
                "with this virtual environment's packages",
                file=sys.stderr,
            )
        yield tree
    finally:
        try:
            _git("worktree", "remove", "--force", str(tmp))
        except subprocess.CalledProcessError:
            # Not registered (the add failed) or not removable: delete the directory, then let git
            # forget worktrees whose directory is gone.
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(subprocess.CalledProcessError):
                _git("worktree", "prune")


def dependency_changes(ours: Path, theirs: Path) -> list[str]:
    """The requirements (``[project]`` dependencies and extras) one pyproject.toml has and the other
    lacks, as "+req" (only theirs) and "-req" (only ours)."""

    def requirements(path: Path) -> set[str]:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
        extras = project.get("optional-dependencies", {})
        return {*project.get("dependencies", []), *(f"[{k}] {r}" for k, v in extras.items() for r in v)}

    mine, other = requirements(ours), requirements(theirs)
    return [f"+{r}" for r in sorted(other - mine)] + [f"-{r}" for r in sorted(mine - other)]


async def in_tree(tree: Tree, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a `bench/_in_tree.py` step with ``tree``'s hims; its standard output (an error with the
    end of its output when it fails)."""
    proc = await asyncio.create_subprocess_exec(
        *tree.argv(*args),
        env=tree.env(**(env or {})),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tree.root,
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        tail = "\n".join((out + err).decode(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"{tree.label}: _in_tree.py {args[0]} failed ({proc.returncode}):\n{tail}")
    return out.decode()


async def verify_tree(tree: Tree) -> str:
    """Where a child with ``tree``'s environment imports hims from (it must be ``tree.src``)."""
    where = (await in_tree(tree, "where")).strip()
    if not where.startswith(str(tree.src.resolve()) + os.sep):
        raise RuntimeError(f"{tree.label}: hims imported from {where}, not {tree.src}")
    return where


async def import_in_tree(
    tree: Tree, url: str, paths: list[Path], *, jobs: int = 2, mode: str = "shipped"
) -> dict[str, Any]:
    """Import FHIR bundles into ``url`` with ``tree``'s importer (`_in_tree.py import`): resources,
    files, errors, seconds (of `import_paths` alone) and ``failures`` (reason -> files)."""
    out = await in_tree(tree, "import", "--jobs", str(jobs), "--mode", mode, url, *map(str, paths))
    # The result is the last line: what the tree logs on its way goes before it.
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


async def tree_token(tree: Tree, url: str, role: str = "physician") -> str:
    """An access token of a new account holding ``role``, made by ``tree``'s own code."""
    return (await in_tree(tree, "token", url, role)).strip()


# ---------------------------------------------------------------------------------------------
# databases


def database_name(url: str) -> str:
    """The database part of a PostgreSQL URL."""
    return url.partition("?")[0].rsplit("/", 1)[1]


async def fresh_database(name: str, tree: Tree | None = None) -> str:
    """Drop and create ``name`` plus this process's id (benches running at the same time do not
    clash), migrate it, return its URL. `drop_databases()` removes what this process created.

    Without ``tree`` the migrations run in this process; with one, that tree's `hims db migrate`
    runs them (and its after-migrate steps, such as the consultations partitions around today).
    """
    name = f"{name}_{os.getpid()}"
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    _CREATED.add(name)
    base, _, query = SERVER.partition("?")  # e.g. ?host=/var/run/postgresql (a Unix socket)
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    if tree is None:
        await asyncio.to_thread(migrate.upgrade, url)
    else:
        await in_tree(tree, "migrate", env={"DATABASE_URL": url, "HIMS_ENV": "development"})
    return url


async def analyze(url: str) -> None:
    """ANALYZE the database, as autovacuum keeps a live database's statistics."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def drop_databases() -> None:
    """Drop the databases `fresh_database` created in this process."""
    conn = await asyncpg.connect(SERVER)
    try:
        for name in sorted(_CREATED):
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    _CREATED.clear()


async def cleaning_up(main: Coroutine[Any, Any, None]) -> None:
    """Run a bench's ``main``, then drop the databases it created (also when it fails, is
    interrupted with Ctrl-C or terminated with SIGTERM)."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await main
    except asyncio.CancelledError:
        raise SystemExit("interrupted: servers stopped, the databases and any checkout removed") from None
    finally:
        await drop_databases()


# ---------------------------------------------------------------------------------------------
# servers


def free_port() -> int:
    """An unused TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `hims serve` of one tree."""

    tree: Tree
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The supervisor's process id (its workers are its children)."""
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's standard error."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_server(
    url: str, port: int, workers: int, data_dir: Path, pool: int, tree: Tree | None = None
) -> Server:
    """`hims serve` of ``tree`` (default this checkout) on ``port`` against ``url``, with ``pool``
    connections per worker; its standard error goes to ``data_dir/server.log``."""
    tree = tree or current_tree()
    env = tree.env(
        DATABASE_URL=url,
        HIMS_DATA_DIR=str(data_dir),
        LOG_LEVEL="warning",
        HIMS_ENV="development",
        DATABASE_MAX_CONNECTIONS=str(pool),
    )
    env.pop("REDIS_URL", None)
    log = data_dir / "server.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            tree.argv("serve", "--port", str(port), "--workers", str(workers)),
            env=env,
            cwd=tree.root,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return Server(tree, url, port, proc, log)


async def wait_ready(base: str, timeout: float = 60, server: Server | None = None) -> None:
    """Poll ``base``/metadata until the server answers (fail early when ``server`` exits)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if server is not None and server.proc.poll() is not None:
                raise RuntimeError(f"{server.tree.label}: hims serve exited:\n{server.log_tail()}")
            try:
                if (await http.get(f"{base}/metadata")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError("server did not start")


async def wait_workers(server_pid: int, port: int, workers: int, timeout: float = 60) -> None:
    """Wait until ``workers`` processes under ``server_pid`` listen on ``port``: `hims serve`
    gives each worker a socket of its own (hims.ops.serving), and connections opened before a
    worker listens all go to the others."""
    server = psutil.Process(server_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listening = 0
        for child in [server, *server.children(recursive=True)]:  # --workers 1 serves in the process
            try:
                sockets = child.net_connections(kind="tcp")
            except psutil.Error:
                continue
            listening += any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets)
        if listening >= workers:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"fewer than {workers} workers listen on port {port}")


@contextlib.asynccontextmanager
async def serving(tree: Tree, url: str, *, workers: int, pool: int) -> AsyncIterator[Server]:
    """`hims serve` of ``tree`` against ``url``, ready (every worker listening, the hims it
    imported checked), stopped at the end."""
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(url, free_port(), workers, Path(tmp), pool, tree)
        try:
            await wait_ready(f"http://127.0.0.1:{server.port}/fhir/R4", server=server)
            await wait_workers(server.pid, server.port, workers)
            first = server.log.read_text(errors="replace").splitlines()[:1]
            expected = f"hims imported from {tree.src.resolve()}{os.sep}"
            if not first or not first[0].startswith(expected):
                raise RuntimeError(f"{tree.label}: the server did not import hims from {tree.src}: {first}")
            yield server
        finally:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()


# ---------------------------------------------------------------------------------------------
# load generation and measurement


class Conn:
    """A minimal HTTP/1.1 keep-alive client (one connection per virtual user).

    httpx spends several ms of CPU per request with 50+ concurrent connections, which on this 2-core
    machine made the load generator the bottleneck; this does the minimum (Content-Length bodies).
    """

    def __init__(
        self, host: str, port: int, prefix: str, token: str, content_type: str = "application/fhir+json"
    ) -> None:
        self.host, self.port, self.prefix, self.token = host, port, prefix, token
        self.content_type = content_type
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """Send one request on the connection (opened on first use); (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = orjson.dumps(body) if body is not None else b""
        head = (
            f"{method} {self.prefix}{path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {self.token}\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.reader = self.writer = None


#: Titles of PostgreSQL's own processes, shared by every database of the cluster.
_PG_SHARED = ("checkpointer", "background writer", "walwriter", "autovacuum launcher", "logical replication")


async def postmaster_pid(url: str) -> int | None:
    """The process id of the PostgreSQL server holding ``url`` (None when it is not on this machine
    or not visible)."""
    conn = await asyncpg.connect(url)
    try:
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    try:
        return psutil.Process(backend).ppid()
    except psutil.Error:
        return None


class CpuMeter:
    """CPU seconds used by the load generator, the server process tree and PostgreSQL over a window.

    With ``postmaster`` and ``database``, PostgreSQL's share is that server's postmaster, its
    shared processes (checkpointer, WAL writer...) and the backends and autovacuum workers of
    ``database``: on a shared machine other databases' backends are other people's work, counted
    under "other" with everything else. Without them it is every postgres process. On a 2-core
    machine the client competes with the server; the split says how much of the machine the figures
    measure the server on.

    Each process counts from its first sighting (zero for one started in the window) to its last:
    the meter looks every second while the event loop runs, so a backend or autovacuum worker that
    ends in the window keeps what it used until the last look.
    """

    def __init__(self, server_pid: int, database: str | None = None, postmaster: int | None = None) -> None:
        self.server = psutil.Process(server_pid)
        self.database = database
        self.postmaster = postmaster
        self.client = psutil.Process()
        self.since = time.time()
        self.base: dict[tuple[str, int, float], float] = {}
        self.last: dict[tuple[str, int, float], float] = {}
        self.started = time.monotonic()
        self.busy = self._busy()
        self._observe()
        self._poller: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # no running loop: two looks, start and stop
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    def _postgres(self) -> list[psutil.Process]:
        if self.postmaster is None or self.database is None:
            return [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]
        try:
            root = psutil.Process(self.postmaster)
            children = root.children()
        except psutil.Error:
            return []
        ours = [root]
        for child in children:
            try:
                title = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if any(kind in title for kind in _PG_SHARED) or self.database in title.split():
                ours.append(child)
        return ours

    @staticmethod
    def _busy() -> float:
        machine = psutil.cpu_times()
        return float(sum(machine) - machine.idle - getattr(machine, "iowait", 0.0))

    def _observe(self) -> None:
        parties = {
            "client": [self.client],
            "server": [self.server, *self.server.children(recursive=True)],
            "postgres": self._postgres(),
        }
        for party, procs in parties.items():
            for proc in procs:
                try:
                    with proc.oneshot():
                        times, born = proc.cpu_times(), proc.create_time()
                except psutil.Error:
                    continue
                key, used = (party, proc.pid, born), times.user + times.system
                if key not in self.base:
                    self.base[key] = 0.0 if born >= self.since else used
                self.last[key] = used

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(1)
            self._observe()

    def stop(self, operations: int) -> dict[str, float]:
        """End the window: cores used by each party (``<party>_cores``) and CPU ms per operation
        (``<party>_ms``); "other" is everything else on the machine."""
        if self._poller is not None:
            self._poller.cancel()
        self._observe()
        wall = time.monotonic() - self.started
        used = {"client": 0.0, "server": 0.0, "postgres": 0.0, "busy": self._busy() - self.busy}
        for key, last in self.last.items():
            used[key[0]] += last - self.base[key]
        used["other"] = max(used["busy"] - used["client"] - used["server"] - used["postgres"], 0.0)
        out = {f"{k}_cores": v / wall for k, v in used.items()}
        out.update({f"{k}_ms": 1000 * v / max(operations, 1) for k, v in used.items()})
        return out

    def report(self, requests: int) -> str:
        """Cores used by each party over the window, and server and PostgreSQL CPU per request."""
        return describe_cpu(self.stop(requests))


def describe_cpu(cpu: dict[str, float]) -> str:
    """Two lines: cores used by each party, and CPU ms per request (`CpuMeter.stop`)."""
    return (
        f"CPU (cores of {psutil.cpu_count()}): client {cpu['client_cores']:.2f}, server "
        f"{cpu['server_cores']:.2f}, postgres {cpu['postgres_cores']:.2f}, other {cpu['other_cores']:.2f}, "
        f"machine busy {cpu['busy_cores']:.2f}\n"
        f"CPU ms per request: server {cpu['server_ms']:.2f}, postgres {cpu['postgres_ms']:.2f}, "
        f"client {cpu['client_ms']:.2f}"
    )


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` in milliseconds."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000
