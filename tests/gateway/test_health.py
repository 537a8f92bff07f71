"""/healthz: 200 when the database and Redis answer, 503 with the reason when Redis is down."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.redis_embedded import EmbeddedRedis
from gateway.settings import Settings


def test_healthy(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_redis_down_is_503(settings: Settings, engine: AsyncEngine, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "own-redis").start()
    app = create_app(settings.model_copy(update={"redis_url": server.url}))
    try:
        with TestClient(app) as client:
            assert client.get("/healthz").status_code == 200
            server.stop()
            response = client.get("/healthz")
    finally:
        server.stop()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("error: ")
