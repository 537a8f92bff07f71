"""Calls: ringing scripted phones, TwiML with Gather and Dial, AMD, updates."""

from __future__ import annotations

from twilio.rest import Client

from tests.twilio_sandbox.conftest import LEAD, OUR_NUMBER, REP, CallbackRecorder
from twilio_sandbox import Sandbox

MENU = (
    '<Response><Gather numDigits="1" action="/menu" timeout="5">'
    "<Say>Press 1 to talk to a loan officer now.</Say></Gather><Say>Goodbye</Say></Response>"
)
ALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


async def test_answered_call_runs_gather_and_posts_digits(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(LEAD, answer_after=4, digits=["1"])
    receiver.answers["/voice"] = MENU
    receiver.answers["/menu"] = "<Response><Say>Connecting</Say><Hangup/></Response>"
    call = await client.calls.create_async(
        to=LEAD,
        from_=OUR_NUMBER,
        url=receiver.url("/voice"),
        status_callback=receiver.url("/call-status"),
        status_callback_event=ALL_EVENTS,
    )
    assert call.status == "queued" and call.sid.startswith("CA")
    await sandbox.advance(2)
    assert [h.params["CallStatus"] for h in receiver.at("/call-status")] == ["initiated", "ringing"]
    await sandbox.settle()

    [voice] = receiver.at("/voice")
    assert voice.signature_ok and voice.params["CallStatus"] == "in-progress"
    assert voice.params["Direction"] == "outbound-api"
    [menu] = receiver.at("/menu")
    assert menu.signature_ok and menu.params["Digits"] == "1" and menu.params["CallSid"] == call.sid
    statuses = receiver.at("/call-status")
    assert [h.params["CallStatus"] for h in statuses] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [h.params["SequenceNumber"] for h in statuses] == ["0", "1", "2", "3"]
    assert all(h.signature_ok for h in statuses)
    done = statuses[-1].params
    assert done["CallbackSource"] == "call-progress-events" and int(done["CallDuration"]) >= 1
    assert "Timestamp" in done
    fetched = await client.calls(call.sid).fetch_async()
    assert fetched.status == "completed" and fetched.duration == done["CallDuration"]
    assert len(sandbox.record.callbacks("gather.action", Digits="1")) == 1


async def test_gather_without_input_falls_through(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = MENU
    await client.calls.create_async(to=LEAD, from_=OUR_NUMBER, url=receiver.url("/voice"))
    await sandbox.settle()
    assert receiver.at("/menu") == []
    assert sandbox.calls.calls and next(iter(sandbox.calls.calls.values())).status == "completed"


async def test_busy_no_answer_and_unreachable(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script("+15551230021", busy=True)
    sandbox.phones.script("+15551230022", answer=False)
    sandbox.phones.script("+15551230023", unreachable=True)
    for to in ("+15551230021", "+15551230022", "+15551230023"):
        await client.calls.create_async(
            to=to,
            from_=OUR_NUMBER,
            twiml="<Response><Say>hi</Say></Response>",
            status_callback=receiver.url("/call-status"),
            timeout=20,
        )
    await sandbox.settle()
    final = {h.params["To"]: h.params["CallStatus"] for h in receiver.at("/call-status")}
    assert final == {"+15551230021": "busy", "+15551230022": "no-answer", "+15551230023": "failed"}


async def test_async_amd_reports_voicemail(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(LEAD, voicemail=True, amd_after=9)
    receiver.answers["/voice"] = '<Response><Pause length="20"/><Say>Message</Say></Response>'
    await client.calls.create_async(
        to=LEAD,
        from_=OUR_NUMBER,
        url=receiver.url("/voice"),
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=receiver.url("/amd"),
    )
    await sandbox.settle()
    [amd] = receiver.at("/amd")
    assert amd.signature_ok and amd.params["AnsweredBy"] == "machine_end_beep"
    assert amd.params["MachineDetectionDuration"] == "9000"
    assert "AnsweredBy" not in receiver.at("/voice")[0].params  # async: Url fetched at once


async def test_sync_amd_passes_answered_by_to_the_url(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    await client.calls.create_async(
        to=LEAD, from_=OUR_NUMBER, url=receiver.url("/voice"), machine_detection="Enable"
    )
    await sandbox.settle()
    assert receiver.at("/voice")[0].params["AnsweredBy"] == "human"


async def test_update_redirects_then_completes(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = '<Response><Pause length="600"/></Response>'
    receiver.answers["/other"] = '<Response><Pause length="600"/></Response>'
    call = await client.calls.create_async(to=LEAD, from_=OUR_NUMBER, url=receiver.url("/voice"))
    await sandbox.advance(10)
    await client.calls(call.sid).update_async(url=receiver.url("/other"))
    await sandbox.advance(1)
    assert len(receiver.at("/other")) == 1
    updated = await client.calls(call.sid).update_async(status="completed")
    assert updated.status == "completed"
    await sandbox.settle()
    assert sandbox.calls.get(call.sid).status == "completed"


async def test_cancel_a_ringing_call(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(LEAD, answer_after=30)
    call = await client.calls.create_async(
        to=LEAD,
        from_=OUR_NUMBER,
        url=receiver.url("/voice"),
        status_callback=receiver.url("/call-status"),
    )
    await sandbox.advance(5)
    canceled = await client.calls(call.sid).update_async(status="canceled")
    assert canceled.status == "canceled"
    await sandbox.settle()
    assert receiver.at("/voice") == []
    assert [h.params["CallStatus"] for h in receiver.at("/call-status")] == ["canceled"]


async def test_dial_with_whisper_connects_when_rep_presses_1(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(LEAD, hangup_after=120)
    sandbox.phones.script(REP, answer_after=5, digits=["1"])
    receiver.answers["/voice"] = (
        f'<Response><Say>Connecting you</Say><Dial action="/dial-done" timeout="20">'
        f'<Number url="/whisper">{REP}</Number></Dial></Response>'
    )
    receiver.answers["/whisper"] = (
        '<Response><Gather numDigits="1" action="/whisper-key"><Say>New lead. Press 1.</Say>'
        "</Gather><Hangup/></Response>"
    )
    receiver.answers["/whisper-key"] = lambda p: (
        "<Response/>" if p["Digits"] == "1" else "<Response><Hangup/></Response>"
    )
    await client.calls.create_async(to=LEAD, from_=OUR_NUMBER, url=receiver.url("/voice"))
    await sandbox.settle()
    [key] = receiver.at("/whisper-key")
    assert key.params["Digits"] == "1" and key.params["Direction"] == "outbound-dial"
    assert "ParentCallSid" in key.params
    [done] = receiver.at("/dial-done")
    assert done.signature_ok and done.params["DialCallStatus"] == "completed"
    assert int(done.params["DialCallDuration"]) > 60
    assert done.params["DialCallSid"] == key.params["CallSid"]


async def test_dial_declined_in_whisper_reports_no_answer(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(REP, digits=["2"])
    receiver.answers["/voice"] = (
        f'<Response><Dial action="/dial-done"><Number url="/whisper">{REP}</Number></Dial>'
        "</Response>"
    )
    receiver.answers["/whisper"] = (
        '<Response><Gather numDigits="1" action="/whisper-key"/><Hangup/></Response>'
    )
    receiver.answers["/whisper-key"] = "<Response><Hangup/></Response>"
    await client.calls.create_async(to=LEAD, from_=OUR_NUMBER, url=receiver.url("/voice"))
    await sandbox.settle()
    assert receiver.at("/dial-done")[0].params["DialCallStatus"] == "no-answer"


async def test_inbound_call_runs_the_numbers_voice_url(
    sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    receiver.answers["/voice"] = "<Response><Reject/></Response>"
    call = sandbox.place_call(LEAD, OUR_NUMBER)
    await sandbox.settle()
    [hit] = receiver.at("/voice")
    assert hit.params["Direction"] == "inbound" and hit.params["From"] == LEAD
    assert call.status == "completed"
