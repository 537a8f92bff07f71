"""A database that can't be reached is an outage, answered 503 with Retry-After, never a 500."""

from __future__ import annotations

from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from gateway.app import create_app
from gateway.settings import Settings

# Nothing listens on port 1 of the loopback: every connection is refused at once.
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def test_requests_with_the_database_down_are_503(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": UNREACHABLE, "twilio_api_url": "http://127.0.0.1:1"}
    )
    form = {"MessageSid": "SM" + "0" * 32, "From": "+14155550100", "To": "+14155550199"}
    signature = RequestValidator(down.twilio_token).compute_signature(
        f"{down.base_url}/twilio/sms", form
    )
    with TestClient(create_app(down), raise_server_exceptions=False) as client:
        api = client.get("/v1/account", headers={"Authorization": "gw_live_whatever"})
        inbound = client.post("/twilio/sms", data=form, headers={"X-Twilio-Signature": signature})
        health = client.get("/healthz")
    for response in (api, inbound):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "service_unavailable"
    assert health.status_code == 503
    assert health.json()["checks"]["database"].startswith("error: ")
