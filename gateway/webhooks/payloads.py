"""The webhook body as it is sent (`encode`), and the test tool's sample; the body itself is
`gateway.webhook_payloads.WebhookPayload`, built when the activity is recorded."""

from __future__ import annotations

import json
from typing import Any, Literal

from gateway.clock import now
from gateway.ids import new_id
from gateway.webhook_payloads import OriginatorField, WebhookPayload


def encode(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def sample_payload(
    account_id: str,
    label: str,
    kind: Literal["event", "outcome"],
    additional_info_keys: list[str],
) -> dict[str, Any]:
    """Realistic dummy data for the test tool: a fake lead, the real field names."""
    moment = now()
    info: dict[str, Any] = {key: f"sample {key}" for key in additional_info_keys}
    info.setdefault("loan_amount", 350000)
    payload = WebhookPayload(
        id=new_id("evt_test"),
        account_id=account_id,
        activity_type=kind,
        activity_label=label,
        activity_play_id=None if label == "opted_in" else new_id("play_test"),
        activity_note="test delivery from POST /v1/webhooks/{id}/test",
        activity_created_at=moment,
        lead_id=new_id("lead_test"),
        lead_first_name="Jane",
        lead_last_name="Sample",
        lead_email="jane.sample@example.com",
        lead_opted_out=label == "opted_out",
        lead_created_at=moment,
        lead_additional_info=info,
        lead_originators=[OriginatorField(origin="EverQuote", key="eq-test-123")],
    )
    return payload.model_dump(mode="json")
