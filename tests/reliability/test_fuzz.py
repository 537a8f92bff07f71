"""Fuzzing: schemathesis against `/openapi.json` served by the real app under uvicorn (every
operation, a valid API key), and random or malformed bodies, validly signed, to every Twilio
route. Bad input must get a 4xx that matches the document and changes nothing; never a 500.

Short form by default (a few examples per operation); `RELIABILITY_FULL=1` raises the counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.parameters import ParameterLocation
from sqlmodel import func, select
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from gateway import accounts
from gateway.app import create_app
from gateway.models import (
    Activity,
    Lead,
    Message,
    OptOutEvent,
    PartyLineRecord,
    Play,
    WebhookClaim,
)
from gateway.settings import Settings
from gateway.twilio_client import FORM
from tests.support.party_line import (
    REP_PHONES,
    add_reps,
    add_rule,
    begin,
    drive,
    party_lines,
    publish_call_now,
)
from tests.support.servers import serve
from tests.support.stack import LEAD, OUR_NUMBER, Stack
from voice.links import (
    AMD_PATH,
    ANSWER_PATH,
    CONFERENCE_PATH,
    INBOUND_PATH,
    LEAD_GATHER_PATH,
    REP_GATHER_PATH,
    STATUS_PATH,
    WHISPER_PATH,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FULL = os.environ.get("RELIABILITY_FULL") == "1"
API_EXAMPLES = 40 if FULL else 8
TWILIO_EXAMPLES = 400 if FULL else 40
# Its job is to answer 200 with the problems of an invalid playbook ({"valid": false, ...}).
REPORTS_INVALID = {"POST /v1/playbooks/validate"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz_settings(max_examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,  # a request over HTTP: speed is for bench/, not for this test
        database=None,  # no example database under .hypothesis/ in the work tree
        derandomize=not FULL,  # the short form is the same run every time
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )


@dataclass
class Served:
    url: str
    headers: dict[str, str]
    token: str


@pytest.fixture
async def served(settings: Settings, issued_key: accounts.IssuedKey) -> AsyncIterator[Served]:
    """The real app under uvicorn in this event loop, and an account's key."""
    async with serve(create_app(settings)) as url:
        settings.public_base_url = url
        yield Served(url, {"Authorization": f"Bearer {issued_key.secret}"}, settings.twilio_token)


async def test_every_operation_matches_its_schema(served: Served) -> None:
    # schemathesis calls synchronously: it runs in a thread while this loop serves the app.
    await asyncio.to_thread(_fuzz_api, served)


def _fuzz_api(served: Served) -> None:
    schema = schemathesis.openapi.from_url(served.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40  # every /v1 operation is in the document
    session = requests.Session()
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(served, session, operation, mode)
            except (Exception, BaseExceptionGroup) as failure:  # one run reports every operation
                failures.append(f"{operation.label} [{mode.value}]: {failure}")
    assert failures == [], "\n\n".join(failures)


def _fuzz_operation(
    served: Served, session: requests.Session, operation: Any, mode: GenerationMode
) -> None:
    @fuzz_settings(API_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=served.url, session=session, headers=served.headers)
        case.validate_response(response, checks=CHECKS)
        body_broken = case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)
        if body_broken and operation.label not in REPORTS_INVALID:
            # A body that breaks the schema is refused. (Query strings carry no types: a
            # schema-negative "false" or "0" may be a valid string or timestamp there.)
            assert 400 <= response.status_code < 500, (case.as_curl_command(), response.text)

    run()


# -- Twilio webhooks -----------------------------------------------------------------------

FIELDS = [
    "AccountSid", "AnsweredBy", "Body", "CallDuration", "CallSid", "CallStatus",
    "ConferenceSid", "Digits", "ErrorCode", "ErrorMessage", "From", "FriendlyName",
    "MachineDetectionDuration", "MediaUrl0", "MessageSid", "MessageStatus",
    "MessagingServiceSid", "NumMedia", "NumSegments", "OptOutType", "ParticipantLabel",
    "SequenceNumber", "SmsSid", "StatusCallbackEvent", "Timestamp", "To",
]  # fmt: skip
PLAUSIBLE = [
    LEAD, OUR_NUMBER, REP_PHONES[0], "STOP", "START", "HELP", "yes", "1", "9", "",
    "queued", "sent", "delivered", "undelivered", "failed", "read", "ringing", "in-progress",
    "completed", "busy", "no-answer", "canceled", "human", "machine_end_beep", "unknown",
    "conference-start", "conference-end", "participant-join", "participant-leave",
    "21610", "30003", "30007", "-1", "0", "99999999999999999999999", "1e9", "NaN",
    "SM" + "0" * 32, "CA" + "f" * 32, "CF" + "1" * 32, "\x00", "a\x00b", "%00", "\u2028",
    "Tue, 18 Nov 2026 20:00:00 +0000", "not a date",
    # Digits int() reads but Twilio never sends: superscript, Arabic-Indic, full-width.
    "\u00b2", "\u0663", "\uff11\uff12", "1_000", " 7", "+7",
]  # fmt: skip


SUPERSCRIPT_TWO = ("NumSegments", "\u00b2")  # int() read it and raised: a 500


def _values(call_sids: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(PLAUSIBLE + call_sids),
        st.text(max_size=40),
        st.text(min_size=300, max_size=3000),  # longer than any column
        st.integers().map(str),
    )


def _bases(call_sids: list[str]) -> list[dict[str, str]]:
    """Well-formed webhooks of each kind, for the fuzzer to damage."""
    call = call_sids[0] if call_sids else "CA" + "a" * 32
    return [
        {"MessageSid": "SM" + "2" * 32, "From": LEAD, "To": OUR_NUMBER, "Body": "hi"},
        {"MessageSid": "SM" + "3" * 32, "MessageStatus": "delivered", "To": LEAD},
        {"CallSid": call, "CallStatus": "completed", "AnsweredBy": "human", "Digits": "1"},
        {"ConferenceSid": "CF" + "1" * 32, "SequenceNumber": "7", "CallSid": call,
         "StatusCallbackEvent": "participant-leave", "FriendlyName": "pl"},
    ]  # fmt: skip


def _forms(call_sids: list[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """A well-formed webhook with fields dropped, values replaced and junk added."""
    keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=20))
    values = _values(call_sids)

    @st.composite
    def damaged(draw: st.DrawFn) -> list[tuple[str, str]]:
        base = dict(draw(st.sampled_from(_bases(call_sids))))
        for key in draw(st.sets(st.sampled_from(sorted(base)))):
            del base[key]
        base.update(draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)))
        form = list(base.items()) + draw(st.lists(st.tuples(keys, values), max_size=6))
        return draw(st.permutations(form))

    return damaged()


def _sign(token: str, url: str, form: list[tuple[str, str]]) -> str:
    # Twilio signs every value, repeated keys included (the validator takes a multidict).
    return str(RequestValidator(token).compute_signature(url, FormData(form)))


async def _fingerprint(stack: Stack) -> tuple[Any, ...]:
    """What a refused webhook must leave as it was."""
    tables = (Message, WebhookClaim, Play, Activity, Lead, OptOutEvent)
    async with stack.sessions() as session:
        counts = [
            (await session.exec(select(func.count()).select_from(table))).one() for table in tables
        ]
        lines = (await session.exec(select(PartyLineRecord))).all()
        states = sorted((row.id, row.phase, row.version) for row in lines)
    return (*counts, states)


async def _party_line(stack: Stack) -> tuple[str, list[str]]:
    """A real party line (ended) so voice callbacks reach the machine, and its call SIDs."""
    await publish_call_now(stack)
    reps = await add_reps(stack, 1)
    play_id = await begin(stack, rule_id=await add_rule(stack, reps))
    await drive(stack)
    [row] = await party_lines(stack, play_id)
    sids = [leg["call_sid"] for leg in row.state["lead_legs"] + row.state["rep_legs"]]
    return row.id, [sid for sid in sids if sid]


def _twilio_paths(party_line_id: str) -> list[str]:
    pl = f"pl={party_line_id}"
    voice = [STATUS_PATH, AMD_PATH, ANSWER_PATH, WHISPER_PATH, REP_GATHER_PATH]
    paths = ["/twilio/sms", "/twilio/sms/status", "/twilio/sms/status?message_id=msg_nope"]
    paths += [INBOUND_PATH, CONFERENCE_PATH, f"{CONFERENCE_PATH}?{pl}", f"{STATUS_PATH}?pl=nope"]
    paths += [f"{path}?{pl}&leg=lead-1" for path in voice] + [f"{STATUS_PATH}?{pl}"]
    paths += [f"{LEAD_GATHER_PATH}?{pl}&leg=lead-1&prompt={p}" for p in ("greeting", "fallback")]
    paths += [f"{LEAD_GATHER_PATH}?{pl}&leg=lead-1&prompt=other", f"{REP_GATHER_PATH}?{pl}"]
    return paths


def _refused(response: httpx.Response) -> bool:
    """A 4xx with the one error shape."""
    if not 400 <= response.status_code < 500:
        return False
    error = response.json().get("error", {})
    return isinstance(error, dict) and bool(error.get("code")) and bool(error.get("message"))


async def test_signed_random_twilio_webhooks_never_500(stack: Stack) -> None:
    party_line_id, call_sids = await _party_line(stack)
    paths = _twilio_paths(party_line_id)
    loop = asyncio.get_running_loop()
    token = stack.settings.twilio_token
    seen: list[int] = []

    def fingerprint() -> tuple[Any, ...]:
        return asyncio.run_coroutine_threadsafe(_fingerprint(stack), loop).result(30)

    # The app is served by this event loop; Hypothesis drives it from a thread.
    def fuzz() -> None:
        with httpx.Client(base_url=stack.url, timeout=30) as http:

            @fuzz_settings(TWILIO_EXAMPLES)
            @given(path=st.sampled_from(paths), form=_forms(call_sids))
            @example(path="/twilio/sms", form=[*_bases(call_sids)[0].items(), SUPERSCRIPT_TWO])
            @example(
                path="/twilio/sms/status",
                form=[
                    *{
                        **_bases(call_sids)[1],
                        "MessageStatus": "failed",
                        "ErrorCode": "\u00b2",
                    }.items()
                ],
            )
            @example(
                path=f"{CONFERENCE_PATH}?pl={party_line_id}",
                form=[*_bases(call_sids)[3].items(), ("SequenceNumber", "\u0663")],
            )
            def post(path: str, form: list[tuple[str, str]]) -> None:
                before = fingerprint()
                signature = _sign(token, stack.url + path, form)
                response = http.post(
                    path,
                    content=urlencode(form).encode(),
                    headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
                )
                seen.append(response.status_code)
                assert response.status_code < 500, (path, form, response.text)
                if response.status_code >= 400:
                    assert _refused(response), (path, form, response.text)
                    assert fingerprint() == before, (path, form, response.status_code)

            post()

    await asyncio.to_thread(fuzz)
    assert len(seen) >= TWILIO_EXAMPLES
    # Both kinds of answers happened: refused garbage and accepted (well-formed enough) input.
    assert any(code >= 400 for code in seen) and any(code < 300 for code in seen)


MALFORMED: list[tuple[bytes, str]] = [
    (b"\xff\xfe\x00garbage", FORM),
    (b"%%%===&&&", FORM),
    (b"MessageSid=%ZZ&From=%", FORM),
    (b"=" * 1000, FORM),
    (b"x" * 70_000, FORM),  # larger than any Twilio webhook
    (b'{"MessageSid": 1}', "application/json"),
    (b"[1, 2]", "application/json"),
    (b"<Response/>", "text/xml"),
    (b"MessageSid=SM1", "multipart/form-data; boundary=x"),
    (b"MessageSid=SM1", "text/plain"),
    (b"", ""),
]


async def test_malformed_twilio_bodies_get_4xx(stack: Stack) -> None:
    """Validly signed (over what the route will parse, where it can parse anything) and still
    refused with a clear 4xx that changes nothing."""
    party_line_id, _sids = await _party_line(stack)
    before = await _fingerprint(stack)
    token = stack.settings.twilio_token
    for body, content_type in MALFORMED:
        for path in _twilio_paths(party_line_id):
            headers = {"X-Twilio-Signature": _sign(token, stack.url + path, [])}
            if content_type:
                headers["Content-Type"] = content_type
            response = await stack.api.post(path, content=body, headers=headers)
            assert _refused(response), (path, body[:30], response.status_code, response.text)
        # JSON is signed through `bodySHA256`: a correct hash over a body that isn't a webhook.
        json_path = f"/twilio/sms?bodySHA256={hashlib.sha256(body).hexdigest()}"
        headers = {"Content-Type": "application/json"}
        headers["X-Twilio-Signature"] = _sign(token, stack.url + json_path, [])
        response = await stack.api.post(json_path, content=body, headers=headers)
        assert _refused(response), (json_path, body[:30], response.status_code, response.text)
    assert await _fingerprint(stack) == before
