"""A party line: a lead in a conference via TwiML, a rep dialled in via the Participants API."""

from __future__ import annotations

from twilio.rest import Client

from tests.twilio_sandbox.conftest import LEAD, OUR_NUMBER, REP, CallbackRecorder
from twilio_sandbox import Sandbox

ROOM = "party-line-42"


async def test_two_calls_meet_in_a_conference(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    sandbox.phones.script(LEAD, answer_after=2)
    sandbox.phones.script(REP, answer_after=6, hangup_after=90)
    receiver.answers["/voice"] = (
        '<Response><Say>Please hold for your loan officer.</Say><Dial action="/after">'
        f'<Conference startConferenceOnEnter="false" endConferenceOnExit="true" beep="false" '
        f'statusCallback="/conf" statusCallbackEvent="start end join leave mute hold">{ROOM}'
        "</Conference></Dial></Response>"
    )
    lead_call = await client.calls.create_async(
        to=LEAD, from_=OUR_NUMBER, url=receiver.url("/voice")
    )
    await sandbox.advance(60)  # the lead waits alone: the conference has not started
    [conf] = await client.conferences.list_async(friendly_name=ROOM)
    assert conf.status == "init"
    assert [h.params["StatusCallbackEvent"] for h in receiver.at("/conf")] == ["participant-join"]

    participant = await client.conferences(ROOM).participants.create_async(
        from_=OUR_NUMBER,
        to=REP,
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        beep="false",
        timeout=20,
        label="rep",
        status_callback=receiver.url("/rep-status"),
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        conference_status_callback=receiver.url("/conf"),
        conference_status_callback_event=["start", "end", "join", "leave"],
    )
    assert participant.conference_sid == conf.sid and participant.call_sid.startswith("CA")
    await sandbox.advance(10)
    fetched = await client.conferences(conf.sid).fetch_async()
    assert fetched.status == "in-progress"
    rep = await client.conferences(conf.sid).participants("rep").fetch_async()
    assert rep.status == "connected" and rep.call_sid == participant.call_sid

    muted = (
        await client.conferences(conf.sid)
        .participants(participant.call_sid)
        .update_async(muted=True, hold=True)
    )
    assert muted.muted is True and muted.hold is True
    await sandbox.settle()

    events = [h.params for h in receiver.at("/conf")]
    assert all(h.signature_ok for h in receiver.at("/conf"))
    assert [e["StatusCallbackEvent"] for e in events] == [
        "participant-join",
        "participant-join",
        "conference-start",
        "participant-mute",
        "participant-hold",
        "participant-leave",
        "participant-leave",
        "conference-end",
    ]
    assert [e["SequenceNumber"] for e in events] == [str(n) for n in range(1, 9)]
    assert {e["ConferenceSid"] for e in events} == {conf.sid}
    assert events[5]["CallSid"] == participant.call_sid  # the rep hung up first
    end = events[-1]
    assert end["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert end["CallSidEndingConference"] == participant.call_sid
    # The lead's <Dial> ended with the conference and its action was requested.
    [after] = receiver.at("/after")
    assert after.params["CallSid"] == lead_call.sid
    assert [h.params["CallStatus"] for h in receiver.at("/rep-status")] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    ended = await client.conferences(conf.sid).fetch_async()
    assert ended.status == "completed"
    assert ended.call_sid_ending_conference == participant.call_sid


async def test_end_via_api_and_kick_a_participant(
    client: Client, sandbox: Sandbox, receiver: CallbackRecorder
) -> None:
    for number in (LEAD, REP):
        await client.conferences(ROOM).participants.create_async(
            from_=OUR_NUMBER,
            to=number,
            conference_status_callback=receiver.url("/conf"),
            conference_status_callback_event=["start", "end", "join", "leave"],
        )
    await sandbox.advance(10)
    [conf] = await client.conferences.list_async(status="in-progress")
    listed = await client.conferences(conf.sid).participants.list_async()
    assert len(listed) == 2
    kicked = await client.conferences(conf.sid).participants(listed[0].call_sid).delete_async()
    assert kicked is True
    await sandbox.advance(1)
    assert len(await client.conferences(conf.sid).participants.list_async()) == 1
    await client.conferences(conf.sid).update_async(status="completed")
    await sandbox.settle()
    last = receiver.at("/conf")[-1].params
    assert last["StatusCallbackEvent"] == "conference-end"
    assert last["ReasonConferenceEnded"] == "conference-ended-via-API"
    assert all(c.status == "completed" for c in sandbox.calls.calls.values())
