"""The party line end to end: the play's call step, the worker, the real twilio client, the
sandbox's scripted lead and rep phones, and every callback signed and applied in order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlmodel import select

from gateway import accounts, optouts
from gateway.clock import now
from gateway.db import transaction
from gateway.models import (
    Channel,
    LedgerEvent,
    LedgerSource,
    OptOutEvent,
    PartyLineRecord,
    RepReservation,
)
from tests.support.party_line import (
    REP_PHONES,
    add_reps,
    add_rule,
    begin,
    calls_to,
    drive,
    labels,
    party_lines,
    play_row,
    publish_call_now,
    texts_to,
)
from tests.support.stack import LEAD, Stack
from twilio_sandbox import CallbackFault


async def test_happy_path_events_in_order(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 2)
    rule = await add_rule(stack, reps)
    play_id = await begin(stack, rule_id=rule)
    await drive(stack)
    assert await labels(stack, play_id) == [
        "party_line_lead_attempted",
        "party_line_lead_answered",
        "party_line_rep_attempted",
        "party_line_completed",
        "completed",
    ]
    [row] = await party_lines(stack, play_id)
    assert (row.phase, row.end_reason, row.connected_rep_id) == ("ended", "completed", reps[0])
    play = await play_row(stack, play_id)
    assert (play.state, play.outcome) == ("has_outcome", "party_line_completed")
    [lead_call] = calls_to(stack, LEAD)
    assert lead_call.get("MachineDetection") == "DetectMessageEnd"
    assert lead_call.get("AsyncAmd") == "true"
    assert len(calls_to(stack, REP_PHONES[0])) == 1
    shown = (await stack.api.get(f"/v1/party-lines/{row.id}")).json()
    assert [leg["leg"] for leg in shown["legs"]] == ["lead-1", "rep-1"]
    assert all(leg["status"] == "completed" for leg in shown["legs"])


async def _one(stack: Stack, play_id: str) -> PartyLineRecord:
    [row] = await party_lines(stack, play_id)
    return row


def _legs(row: PartyLineRecord) -> list[dict[str, Any]]:
    return list(row.state["lead_legs"]) + list(row.state["rep_legs"])


async def test_lead_voicemail_gets_a_message_and_the_play_goes_on(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    play_id = await begin(stack, rule_id=rule, voicemail=True)
    await drive(stack)
    row = await _one(stack, play_id)
    assert (row.end_reason, row.state["lead_legs"][0]["answered_by"]) == (
        "lead_machine",
        "machine_end_beep",
    )
    [update] = stack.sandbox.record.requests("calls.update")
    assert "Acme Lending returning your request" in (update.get("Twiml") or "")
    assert calls_to(stack, REP_PHONES[0]) == []  # a machine never gets a rep
    [text] = texts_to(stack)
    assert text.startswith("Sorry we missed you! Acme Lending will text you shortly.")
    assert (await labels(stack, play_id))[:1] == ["party_line_lead_attempted"]
    assert "party_line_lead_answered" not in await labels(stack, play_id)


async def test_lead_no_answer_then_retry_connects(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    play_id = await begin(stack, rule_id=rule, answer=False)
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.phase == "lead_retry_wait" and row.state["lead_legs"][0]["status"] == "no-answer"
    stack.sandbox.phones.script(LEAD)  # picks up next time
    await stack.sandbox.advance(10 * 60 + 1)
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.end_reason == "completed"
    assert len(calls_to(stack, LEAD)) == 2
    assert (await labels(stack, play_id)).count("party_line_lead_attempted") == 2


async def test_first_rep_no_answer_second_connects(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 2)
    stack.sandbox.phones.script(REP_PHONES[0], answer=False)
    play_id = await begin(stack, rule_id=await add_rule(stack, reps))
    await drive(stack)
    row = await _one(stack, play_id)
    assert (row.end_reason, row.connected_rep_id) == ("completed", reps[1])
    assert [leg["result"] for leg in row.state["rep_legs"]] == ["no-answer", "connected"]
    assert await labels(stack, play_id) == [
        "party_line_lead_attempted",
        "party_line_lead_answered",
        "party_line_rep_attempted",
        "party_line_rep_attempted",
        "party_line_completed",
        "completed",
    ]


async def test_rep_answers_but_does_not_press_1(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 2)
    stack.sandbox.phones.script(REP_PHONES[0], digits=[""])
    play_id = await begin(stack, rule_id=await add_rule(stack, reps))
    await drive(stack)
    row = await _one(stack, play_id)
    assert (row.end_reason, row.connected_rep_id) == ("completed", reps[1])
    assert row.state["rep_legs"][0]["result"] == "declined"


async def test_all_reps_fail_then_the_lead_asks_for_a_callback(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 2, answer=False)
    # The greeting's Gather times out (""), the fallback's gets 1.
    play_id = await begin(stack, rule_id=await add_rule(stack, reps), digits=["", "1"])
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.end_reason == "callback_requested"
    assert await labels(stack, play_id) == [
        "party_line_lead_attempted",
        "party_line_lead_answered",
        "party_line_rep_attempted",
        "party_line_rep_attempted",
        "party_line_rep_unsuccessful",
        "callback_requested",
        "completed",
    ]
    play = await play_row(stack, play_id)
    assert (play.state, play.outcome) == ("has_outcome", "callback_requested")
    async with stack.sessions() as session:
        assert (await session.exec(select(RepReservation))).all() == []


async def test_lead_hangs_up_on_hold_cancels_the_rep_call(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 1, answer_after=15.0)
    play_id = await begin(stack, rule_id=await add_rule(stack, reps))
    await stack.work()  # the lead is on hold; the rep's call is decided
    await stack.run_worker()  # ... and placed
    lead_sid = (await _one(stack, play_id)).state["lead_legs"][0]["call_sid"]
    stack.sandbox.calls.hangup(stack.sandbox.calls.get(lead_sid))  # the lead gives up
    await stack.sandbox.advance(2)  # the rep's phone rings; the lead's hangup is reported
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.end_reason == "lead_hung_up"
    [rep_leg] = row.state["rep_legs"]
    assert rep_leg["status"] == "canceled" and rep_leg["result"] == "abandoned"
    [cancel] = stack.sandbox.record.requests("calls.update")
    assert cancel.get("Status") == "completed" and rep_leg["call_sid"] in cancel.path
    [text] = texts_to(stack)
    assert text.startswith("Sorry we missed you! Acme Lending will text you shortly.")


async def test_duplicate_and_out_of_order_callbacks_connect_once(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 2)
    for action in ("duplicate", "reorder"):
        stack.sandbox.faults.add_callback(CallbackFault(action, kind="conference.status", times=3))
    stack.sandbox.faults.add_callback(CallbackFault("duplicate", kind="call.status", times=20))
    stack.sandbox.faults.add_callback(CallbackFault("duplicate", kind="call.amd", times=5))
    play_id = await begin(stack, rule_id=await add_rule(stack, reps))
    await drive(stack)
    row = await _one(stack, play_id)
    assert (row.end_reason, row.connected_rep_id) == ("completed", reps[0])
    assert (await labels(stack, play_id)).count("party_line_completed") == 1
    assert len(calls_to(stack, REP_PHONES[0])) == 1 and calls_to(stack, REP_PHONES[1]) == []
    faults = {(c.kind, c.fault) for c in stack.sandbox.record.callback_log}
    assert {("conference.status", "reorder"), ("call.status", "duplicate")} <= faults


async def test_quiet_hours_defer_the_call_to_the_morning(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    night = datetime(2026, 11, 19, 5, 0, tzinfo=UTC)  # 21:00 in San Francisco
    await stack.sandbox.advance((night - now()).total_seconds())
    play_id = await begin(stack, rule_id=rule)
    await drive(stack)
    row = await _one(stack, play_id)
    eight = datetime(2026, 11, 19, 16, 0, tzinfo=UTC)
    assert row.phase == "lead_retry_wait" and row.wake_at == eight
    assert calls_to(stack, LEAD) == []
    await stack.sandbox.advance((eight - now()).total_seconds() + 1)
    await drive(stack)
    [call] = calls_to(stack, LEAD)
    assert call.at >= eight
    assert (await _one(stack, play_id)).end_reason == "completed"


async def test_an_opted_out_lead_is_never_called(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    async with transaction(stack.sessions) as session:
        await optouts.record(
            session,
            account_id=stack.account_id,
            phone=LEAD,
            event=LedgerEvent.OPT_OUT,
            channel=Channel.SMS,
            source=LedgerSource.KEYWORD,
            keyword="STOP",
        )
    play_id = await begin(stack, rule_id=rule)
    await drive(stack)
    row = await _one(stack, play_id)
    assert (row.end_reason, row.state["end_note"]) == ("gate_blocked", "opted_out")
    assert calls_to(stack, LEAD) == [] and texts_to(stack) == []


async def test_keypress_9_opts_the_lead_out(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    play_id = await begin(stack, rule_id=rule, digits=["9"])
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.end_reason == "lead_opted_out"
    async with stack.sessions() as session:
        [event] = (await session.exec(select(OptOutEvent))).all()
    assert (event.phone, event.channel, event.source, event.event) == (
        LEAD,
        "voice",
        "keypress",
        "opt_out",
    )
    assert event.call_sid == row.state["lead_legs"][0]["call_sid"]
    assert (await play_row(stack, play_id)).state == "opted_out"
    assert texts_to(stack) == []


async def test_watchdog_ends_a_party_line_whose_callbacks_stopped(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    stack.sandbox.faults.add_callback(CallbackFault("drop", kind="call.amd", times=1))
    play_id = await begin(stack, rule_id=rule)
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.phase == "lead_answered" and row.wake_at is not None
    await stack.sandbox.advance(6 * 60)
    await drive(stack)
    row = await _one(stack, play_id)
    assert row.end_reason == "watchdog"
    [cancel] = stack.sandbox.record.requests("calls.update")
    assert cancel.get("Status") == "completed"
    assert row.state["lead_legs"][0]["status"] == "completed"


async def test_twenty_party_lines_five_reps_never_double_booked(stack: Stack) -> None:
    await publish_call_now(stack)
    reps = await add_reps(stack, 5, hangup_after=40.0)
    rule = await add_rule(stack, reps)
    leads = [f"+141555501{60 + i}" for i in range(20)]
    plays = [await begin(stack, phone, rule_id=rule) for phone in leads]
    await drive(stack, rounds=30)
    rows = [await _one(stack, play_id) for play_id in plays]
    assert all(row.phase == "ended" for row in rows)
    completed = [row for row in rows if row.end_reason == "completed"]
    assert len(completed) >= 5
    by_rep: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        for leg in row.state["rep_legs"]:
            by_rep.setdefault(leg["rep_id"], []).append((leg["requested_at"], leg["ended_at"]))
    for rep_id, spans in by_rep.items():
        spans.sort()
        for (_, ended), (started, _) in itertools.pairwise(spans):
            assert ended is not None and ended <= started, f"{rep_id} double-booked"
    async with stack.sessions() as session:
        assert (await session.exec(select(RepReservation))).all() == []


async def test_api_starts_and_shows_a_party_line(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    play_id = await begin(stack, rule_id=rule, digits=["9"])
    await drive(stack)  # the step's party line ends with the opt-out; the play is over
    refused = await stack.api.post(f"/v1/plays/{play_id}/party-line", json={})
    assert refused.status_code == 409
    other = await begin(stack, "+14155550177", rule_id=rule)
    await stack.work()  # its step's party line is live
    live = await stack.api.post(f"/v1/plays/{other}/party-line", json={})
    assert live.status_code == 409 and live.json()["error"]["existing_id"]
    bad = await stack.api.post(f"/v1/plays/{other}/party-line", json={"policy": {"nope": 1}})
    assert bad.status_code in (409, 422)
    assert (await stack.api.get("/v1/party-lines/pl_missing")).status_code == 404
    listed = (await stack.api.get(f"/v1/plays/{other}/party-lines")).json()["data"]
    assert [row["state"] != "ended" for row in listed] == [True]
    shown = await stack.api.get(f"/v1/party-lines/{listed[0]['id']}")
    assert shown.json()["legs"][0]["leg"] == "lead-1"


async def test_voice_routes_check_signatures_and_input(stack: Stack) -> None:
    unsigned = await stack.api.post(
        "/twilio/voice/status?pl=pl_x&leg=lead-1", data={"CallSid": "CA1", "CallStatus": "ringing"}
    )
    assert unsigned.status_code == 403
    bad = await stack.post_twilio(
        "/twilio/voice/status?pl=pl_x&leg=lead-1", {"CallSid": "CA1", "CallStatus": "dancing"}
    )
    assert bad.status_code == 400
    missing = await stack.post_twilio("/twilio/voice/conference", {"ConferenceSid": "CF1"})
    assert missing.status_code == 400
    unknown = await stack.post_twilio(
        "/twilio/voice/status?pl=pl_x&leg=lead-1", {"CallSid": "CA1", "CallStatus": "ringing"}
    )
    assert unknown.status_code == 204
    answer = await stack.post_twilio(
        "/twilio/voice/answer?pl=pl_x&leg=lead-1", {"CallSid": "CA1", "CallStatus": "in-progress"}
    )
    assert answer.status_code == 200 and "<Hangup" in answer.text


async def test_another_account_cannot_see_or_start_party_lines(stack: Stack) -> None:
    await publish_call_now(stack)
    rule = await add_rule(stack, await add_reps(stack, 1))
    play_id = await begin(stack, rule_id=rule)
    await stack.work()
    row = await _one(stack, play_id)
    async with transaction(stack.sessions) as session:
        _other, key = await accounts.create_account(session, "Other Co")
    headers = {"Authorization": f"Bearer {key.secret}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as other:
        assert (await other.get(f"/v1/party-lines/{row.id}")).status_code == 404
        assert (await other.get(f"/v1/plays/{play_id}/party-lines")).status_code == 404
        assert (await other.post(f"/v1/plays/{play_id}/party-line", json={})).status_code == 404
    assert len(await party_lines(stack, play_id)) == 1
