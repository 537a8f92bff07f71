"""An open-loop HTTP/1.1 load generator, run as its own process by the benchmarks.

    python -m bench.loadgen      # then one JSON command per line on stdin, one answer per line

Command: {"port": 8000, "rate": 200, "seconds": 5, "requests": "/tmp/reqs.pickle"} where the
file holds a pickled list of complete raw requests (already signed; at least rate*seconds of
them). Request i is due at start + i/rate whatever happened to earlier ones, and its latency is
counted from that due time, not from when it was written: a server that falls behind sees its
queueing in the numbers (no coordinated omission). Connections are keep-alive and reused; a
request that finds none idle opens another, up to MAX_CONNECTIONS, then waits for one (that
wait counts too). The answer has the latency percentiles, statuses, the rate achieved, how late
requests left (the generator's own lag) and the CPU the generator used, so a saturated
generator shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

MAX_CONNECTIONS = 256
PREOPEN = 16
REQUEST_TIMEOUT = 10.0
IDLE_LIMIT = 3.0  # seconds a kept-alive connection may sit unused before it is replaced


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    used: float = field(default_factory=time.monotonic)


@dataclass
class Pool:
    port: int
    idle: list[Conn] = field(default_factory=list)
    opened: int = 0
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def get(self) -> Conn:
        while self.idle:
            conn = self.idle.pop()
            if time.monotonic() - conn.used < IDLE_LIMIT:
                return conn
            self.drop(conn)  # the server may have closed it (uvicorn: 5 s keep-alive)
        if self.opened < MAX_CONNECTIONS:
            self.opened += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.opened -= 1
                raise
            return Conn(reader, writer)
        async with self.freed:
            await self.freed.wait_for(lambda: bool(self.idle))
        return await self.get()

    async def put(self, conn: Conn) -> None:
        conn.used = time.monotonic()
        self.idle.append(conn)
        async with self.freed:
            self.freed.notify()

    def drop(self, conn: Conn) -> None:
        self.opened -= 1
        conn.writer.close()


async def exchange(conn: Conn, raw: bytes) -> tuple[int, bool]:
    """Write one request, read its response; (status, keep the connection)."""
    conn.writer.write(raw)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
        elif name == "transfer-encoding":
            raise RuntimeError("chunked responses are not expected from these routes")
    if length:
        await conn.reader.readexactly(length)
    return status, keep


async def _one(pool: Pool, raw: bytes, due: float, out: dict[str, Any]) -> None:
    sent_lag = 0.0
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            conn = await pool.get()
            sent_lag = time.perf_counter() - due
            try:
                status, keep = await exchange(conn, raw)
            except BaseException:
                pool.drop(conn)
                raise
        done = time.perf_counter()
        if keep:
            await pool.put(conn)
        else:
            pool.drop(conn)
        out["statuses"][status] = out["statuses"].get(status, 0) + 1
        out["latencies"].append(done - due)
        out["lags"].append(sent_lag)
        out["last"] = max(out["last"], done)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, RuntimeError) as exc:
        out["errors"] += 1
        out["error_kinds"][type(exc).__name__] = out["error_kinds"].get(type(exc).__name__, 0) + 1
        # A timed-out or failed request counts at the worst latency it could have had.
        out["latencies"].append(REQUEST_TIMEOUT)


async def run(pool: Pool, requests: list[bytes], rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    if len(requests) < count:
        raise ValueError(f"{count} requests needed, {len(requests)} given")
    out: dict[str, Any] = {
        "statuses": {},
        "latencies": [],
        "lags": [],
        "errors": 0,
        "error_kinds": {},
        "last": 0.0,
    }
    tasks: set[asyncio.Task[None]] = set()
    cpu0, start = time.process_time(), time.perf_counter() + 0.05
    i = 0
    while i < count:
        now = time.perf_counter()
        while i < count and start + i / rate <= now:
            task = asyncio.create_task(_one(pool, requests[i], start + i / rate, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
    if tasks:
        await asyncio.wait(list(tasks))
    elapsed = max(out["last"], time.perf_counter()) - start
    cpu = time.process_time() - cpu0
    latencies = sorted(out["latencies"])
    lags = sorted(out["lags"])

    def pct(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]

    ok = sum(n for status, n in out["statuses"].items() if 200 <= status < 300)
    return {
        "offered": rate,
        "seconds": seconds,
        "sent": count,
        "ok": ok,
        "errors": out["errors"],
        "error_kinds": out["error_kinds"],
        "statuses": {str(k): v for k, v in out["statuses"].items()},
        "achieved": ok / elapsed if elapsed > 0 else 0.0,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "lag_p99_ms": pct(lags, 99) * 1000,
        "cpu": cpu / elapsed if elapsed > 0 else 0.0,
        "connections": pool.opened,
    }


async def main() -> None:
    pools: dict[int, Pool] = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        port = int(command["port"])
        pool = pools.get(port)
        if pool is None:
            pool = pools[port] = Pool(port)
            conns = [await pool.get() for _ in range(PREOPEN)]
            for conn in conns:
                await pool.put(conn)
        raw = await asyncio.to_thread(Path(command["requests"]).read_bytes)
        requests: list[bytes] = pickle.loads(raw)
        result = await run(pool, requests, float(command["rate"]), float(command["seconds"]))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    for pool in pools.values():
        for conn in pool.idle:
            with contextlib.suppress(Exception):
                conn.writer.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    uvloop.run(main())
