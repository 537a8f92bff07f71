"""A sandbox with a `state_dir` remembers what it accepted: a new sandbox on the same directory
(the old one discarded, as when `gateway run` dies) answers for the same messages, numbers,
services and STOP list, and finishes the messages and callbacks it owed (issue 18)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from gateway.twilio_client import build_twilio_client
from tests.support.servers import serve
from tests.twilio_sandbox.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    LEAD,
    OUR_NUMBER,
    CallbackRecorder,
    make_sandbox,
)
from twilio_sandbox import CallbackFault, Sandbox
from twilio_sandbox.store import outbound_per_phone

SERVICE = "MG" + "b2" * 16


@asynccontextmanager
async def served(sandbox: Sandbox) -> AsyncIterator[Client]:
    """The real twilio client against this sandbox; the sandbox is closed afterwards."""
    async with serve(sandbox.app) as url:
        client = build_twilio_client(ACCOUNT_SID, AUTH_TOKEN, api_base_url=url, timeout=5)
        try:
            yield client
        finally:
            await client.http_client.close()
            await sandbox.aclose()


def statuses(receiver: CallbackRecorder, sid: str) -> list[str]:
    return [
        h.params["MessageStatus"] for h in receiver.at("/status") if h.params["MessageSid"] == sid
    ]


async def test_a_new_sandbox_on_the_same_directory_knows_every_message(
    tmp_path: Path, receiver: CallbackRecorder
) -> None:
    first = make_sandbox(state_dir=tmp_path)
    number = first.add_number(
        OUR_NUMBER, sms_url=receiver.url("/sms"), messaging_service_sid=SERVICE
    )
    async with served(first) as client:
        delivered = await client.messages.create_async(
            to=LEAD, from_=OUR_NUMBER, body="first", status_callback=receiver.url("/status")
        )
        await first.advance(5)
        pending = await client.messages.create_async(
            to="+15551230003", from_=OUR_NUMBER, body="second"
        )
        first.send_sms("+15551230004", OUR_NUMBER, "STOP")
        await first.advance(0.1)
        assert (await client.messages(delivered.sid).fetch_async()).status == "delivered"
    del first  # what it kept in memory is gone, as after a kill

    second = make_sandbox(state_dir=tmp_path)
    async with served(second) as client:
        fetched = await client.messages(delivered.sid).fetch_async()
        assert (fetched.status, fetched.to, fetched.from_, fetched.body) == (
            "delivered",
            LEAD,
            OUR_NUMBER,
            "first",
        )
        assert fetched.account_sid == ACCOUNT_SID
        assert fetched.date_created == delivered.date_created and fetched.date_sent is not None
        listed = await client.messages.list_async(to=LEAD, from_=OUR_NUMBER)
        assert [m.sid for m in listed] == [delivered.sid]
        assert (await client.messages(pending.sid).fetch_async()).status == "queued"
        # Numbers keep their PN SID, services their pool, the STOP list its phones.
        owned = await client.incoming_phone_numbers.list_async(phone_number=OUR_NUMBER)
        assert [n.sid for n in owned] == [number.sid]
        assert second.services[SERVICE].numbers == [OUR_NUMBER]
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to="+15551230004", from_=OUR_NUMBER, body="x")
        assert refused.value.code == 21610
        # The message the first sandbox had not delivered yet goes on from where it stopped.
        await second.advance(5)
        assert (await client.messages(pending.sid).fetch_async()).status == "delivered"
    assert statuses(receiver, delivered.sid) == ["sent", "delivered"]  # nothing sent twice
    assert {p: [s.sid for s in sent] for p, sent in outbound_per_phone(tmp_path).items()} == {
        LEAD: [delivered.sid],
        "+15551230003": [pending.sid],
    }


async def test_a_status_callback_owed_at_the_crash_is_sent_after_the_restart(
    tmp_path: Path, receiver: CallbackRecorder
) -> None:
    first = make_sandbox(state_dir=tmp_path)
    first.add_number(OUR_NUMBER, sms_url=receiver.url("/sms"))
    # The `sent` callback never reaches the receiver: the process died with it in flight.
    first.faults.add_callback(CallbackFault("drop", kind="sms.status"))
    async with served(first) as client:
        msg = await client.messages.create_async(
            to=LEAD, from_=OUR_NUMBER, body="hi", status_callback=receiver.url("/status")
        )
        await first.advance(0.6)
        assert first.messaging.get(msg.sid).status == "sent"
    assert statuses(receiver, msg.sid) == []

    second = make_sandbox(state_dir=tmp_path)
    async with served(second):
        await second.advance(10)
        assert second.messaging.get(msg.sid).status == "delivered"
    assert statuses(receiver, msg.sid) == ["sent", "delivered"]

    # Both answered: a third start owes nothing and sends nothing.
    third = make_sandbox(state_dir=tmp_path)
    async with served(third):
        await third.advance(10)
    assert statuses(receiver, msg.sid) == ["sent", "delivered"]


def test_without_a_state_dir_nothing_is_kept(tmp_path: Path) -> None:
    assert Sandbox(ACCOUNT_SID, AUTH_TOKEN).store is None
    store = make_sandbox(state_dir=tmp_path / "state").store
    assert store is not None
    store.close()
    assert (tmp_path / "state" / "sandbox.sqlite3").is_file()
