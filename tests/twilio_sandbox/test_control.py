"""The /_sandbox control API (for the CLI demo and benchmarks) and real-time mode."""

from __future__ import annotations

import asyncio

import httpx
from twilio.rest import Client

from tests.support.servers import serve
from tests.twilio_sandbox.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    LEAD,
    OUR_NUMBER,
    CallbackRecorder,
    make_sandbox,
)
from twilio_sandbox import Sandbox


async def test_control_api_drives_the_sandbox(
    sandbox: Sandbox, sandbox_url: str, client: Client, receiver: CallbackRecorder
) -> None:
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    async with httpx.AsyncClient(base_url=sandbox_url, auth=auth, timeout=5) as http:
        assert (await http.get("/_sandbox/clock", auth=("x", "y"))).status_code == 401
        new = "+15005550007"
        r = await http.post(
            "/_sandbox/numbers", json={"number": new, "sms_url": receiver.url("/sms2")}
        )
        assert r.status_code == 200
        r = await http.put(
            f"/_sandbox/phones/{LEAD}", json={"replies": [{"body": "YES", "after": 2}]}
        )
        assert r.status_code == 200
        await client.messages.create_async(to=LEAD, from_=new, body="Want a quote?")
        r = await http.post("/_sandbox/sms", json={"from": LEAD, "to": OUR_NUMBER, "body": "hi"})
        assert r.json()["direction"] == "inbound"
        before = (await http.get("/_sandbox/clock")).json()["seconds"]
        r = await http.post("/_sandbox/advance", json={"seconds": 10})
        assert r.json()["seconds"] == before + 10
        assert [h.params["Body"] for h in receiver.at("/sms2")] == ["YES"]
        assert [h.params["Body"] for h in receiver.at("/sms")] == ["hi"]
        reqs = (
            await http.get("/_sandbox/record/requests", params={"kind": "messages.create"})
        ).json()
        assert len(reqs) == 1 and ["To", LEAD] in reqs[0]["params"]
        cbs = (await http.get("/_sandbox/record/callbacks", params={"kind": "sms.inbound"})).json()
        assert len(cbs) == 2 and all(c["status"] == 200 for c in cbs)
        r = await http.post("/_sandbox/faults/rest", json={"action": "error500", "times": 1})
        assert r.status_code == 200
        assert (await http.delete("/_sandbox/faults")).status_code == 200
        await http.post("/_sandbox/sms", json={"from": LEAD, "to": OUR_NUMBER, "body": "STOP"})
        await http.post("/_sandbox/settle", json={})
        assert (await http.get("/_sandbox/optouts")).json() == [
            {"phone": LEAD, "number": OUR_NUMBER}
        ]
        bad = await http.post("/_sandbox/sms", json={"from": LEAD})
        assert bad.status_code == 400


async def test_realtime_mode_runs_without_advance(receiver: CallbackRecorder) -> None:
    sandbox = make_sandbox(realtime=True, speed=200.0)
    sandbox.add_number(OUR_NUMBER, sms_url=receiver.url("/sms"))
    async with serve(sandbox.app):  # the app's lifespan starts the real-time driver
        sandbox.send_sms(LEAD, OUR_NUMBER, "hello")
        async with asyncio.timeout(5):
            # Real time here on purpose: a few ms of wall clock at 200x speed.
            while not receiver.at("/sms"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    assert receiver.at("/sms")[0].signature_ok
