"""Phones answered by hand (`PhoneScript(by_hand=True)`, the gateway's dev phone page): a call
rings until `Calls.answer_by_hand` or its timeout, and a Gather waits for `Calls.press`."""

from __future__ import annotations

import pytest
from twilio.rest import Client

from tests.twilio_sandbox.conftest import LEAD, OUR_NUMBER, CallbackRecorder
from twilio_sandbox import Sandbox
from twilio_sandbox.calls import Call
from twilio_sandbox.wire import TwilioError

MENU = (
    '<Response><Gather numDigits="1" action="/menu" timeout="8">'
    "<Say>Press 1.</Say></Gather><Say>Goodbye</Say></Response>"
)
LISTEN = '<Response><Pause length="60"/></Response>'


async def _ringing(client: Client, sandbox: Sandbox, receiver: CallbackRecorder) -> Call:
    sandbox.phones.script(LEAD, by_hand=True)
    created = await client.calls.create_async(
        to=LEAD,
        from_=OUR_NUMBER,
        url=receiver.url("/voice"),
        status_callback=receiver.url("/call-status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        timeout=60,
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=receiver.url("/amd"),
    )
    await sandbox.advance(50)  # far past a scripted phone's 3 s: still ringing, by hand
    call = sandbox.calls.get(created.sid)
    assert call.status == "ringing" and call.hand_wake is not None
    assert receiver.at("/voice") == []
    return call


async def test_a_by_hand_call_rings_until_answered_as_a_person(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = LISTEN
    call = await _ringing(client, sandbox, receiver)
    sandbox.calls.answer_by_hand(call.sid)
    await sandbox.advance(5)
    assert call.status == "in-progress"
    [voice] = receiver.at("/voice")
    assert voice.signature_ok and voice.params["CallStatus"] == "in-progress"
    [amd] = receiver.at("/amd")
    assert amd.params["AnsweredBy"] == "human"
    with pytest.raises(TwilioError):  # answered once
        sandbox.calls.answer_by_hand(call.sid)


async def test_answered_by_hand_as_voicemail(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = LISTEN
    call = await _ringing(client, sandbox, receiver)
    sandbox.calls.answer_by_hand(call.sid, machine=True)
    await sandbox.advance(10)
    [amd] = receiver.at("/amd")
    assert amd.params["AnsweredBy"] == "machine_end_beep"


async def test_a_by_hand_call_nobody_answers_ends_at_its_timeout(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    call = await _ringing(client, sandbox, receiver)
    await sandbox.settle()
    assert call.status == "no-answer" and call.hand_wake is None
    assert receiver.at("/voice") == []
    with pytest.raises(TwilioError):
        sandbox.calls.answer_by_hand(call.sid)


async def test_a_key_pressed_during_a_gather_reaches_its_action(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = MENU
    receiver.answers["/menu"] = "<Response><Hangup/></Response>"
    call = await _ringing(client, sandbox, receiver)
    sandbox.calls.answer_by_hand(call.sid)
    for _ in range(20):  # until the Gather's prompt is said and it waits for a key
        await sandbox.advance(0.5)
        if call.hand_wake is not None:
            break
    assert call.status == "in-progress" and call.hand_wake is not None
    with pytest.raises(TwilioError):
        sandbox.calls.press(call.sid, "1x")  # not a key: refused, nothing pressed
    assert call.hand_wake is not None
    sandbox.calls.press(call.sid, "1")
    await sandbox.settle()
    [menu] = receiver.at("/menu")
    assert menu.signature_ok and menu.params["Digits"] == "1"
    assert call.status == "completed"
    with pytest.raises(TwilioError):
        sandbox.calls.press(call.sid, "2")  # the call is over


async def test_keys_given_with_the_answer_wait_for_the_gather(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = MENU
    call = await _ringing(client, sandbox, receiver)
    sandbox.calls.answer_by_hand(call.sid)
    sandbox.calls.press(call.sid, "1")  # pressed before the Gather: queued for it
    await sandbox.settle()
    assert [hit.params["Digits"] for hit in receiver.at("/menu")] == ["1"]


async def test_a_gather_nobody_presses_waits_its_timeout_once(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = MENU
    call = await _ringing(client, sandbox, receiver)
    sandbox.calls.answer_by_hand(call.sid)
    await sandbox.settle()
    assert receiver.at("/menu") == []
    assert call.status == "completed" and call.start_time and call.end_time
    # "Press 1." (1 s) + the Gather's 8 s + "Goodbye" (1 s), plus the answer's own moments:
    # not the 8 s twice.
    assert (call.end_time - call.start_time).total_seconds() < 8 * 2
