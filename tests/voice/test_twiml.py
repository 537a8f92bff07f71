"""The party line's TwiML, parsed back as XML: the attributes Twilio acts on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from voice import twiml
from voice.party_line import Hangup, JoinConference, LeaveVoicemail, OfferCallback, Policy

ROOM = twiml.Room(
    name="pl-42",
    status_callback="https://gw.example.com/twilio/voice/conference?pl=42",
    hold_music_url="https://gw.example.com/static/hold.mp3",
)
GATHER = "https://gw.example.com/twilio/voice/gather?pl=42&leg=lead-1&prompt=greeting"


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    return root


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def test_lead_answer_greets_offers_opt_out_then_holds_in_the_conference() -> None:
    policy = Policy(business_name="Acme Mortgage")
    greeting = policy.greeting(lead_name="Jane", rep_name="Bob")
    root = parse(
        twiml.lead_answer(
            greeting=greeting, opt_out_prompt=policy.opt_out_prompt, gather_url=GATHER, room=ROOM
        )
    )
    assert verbs(root) == ["Gather", "Dial", "Hangup"]
    gather = root[0]
    assert gather.attrib["numDigits"] == "1"
    assert gather.attrib["action"] == GATHER  # & escaped in XML, intact once parsed
    assert "actionOnEmptyResult" not in gather.attrib  # silence falls through to the conference
    says = [say.text for say in gather.findall("Say")]
    assert says == [
        "Hi Jane, this is Acme Mortgage. Please hold while we connect you with Bob.",
        "To stop receiving calls from us, press 9.",
    ]
    conference = root[1].find("Conference")
    assert conference is not None and conference.text == "pl-42"
    assert conference.attrib["startConferenceOnEnter"] == "false"  # hold music until the rep
    assert conference.attrib["endConferenceOnExit"] == "true"  # the lead leaving ends it
    assert conference.attrib["waitUrl"] == ROOM.hold_music_url
    assert conference.attrib["waitMethod"] == "GET"
    assert conference.attrib["statusCallback"] == ROOM.status_callback
    assert conference.attrib["statusCallbackEvent"] == "start end join leave"
    assert conference.attrib["beep"] == "false"


def test_rep_whisper_waits_for_1_and_reports_silence() -> None:
    text = Policy().whisper(lead_name="Jane Roe", source="EverQuote", answers="Wants a refi.")
    root = parse(twiml.rep_whisper(whisper=text, gather_url=GATHER, timeout=8))
    assert verbs(root) == ["Gather", "Say", "Hangup"]
    gather = root[0]
    assert (gather.attrib["numDigits"], gather.attrib["timeout"]) == ("1", "8")
    assert gather.attrib["actionOnEmptyResult"] == "true"
    say = gather.find("Say")
    assert say is not None and say.text is not None
    assert "Jane Roe" in say.text and "EverQuote" in say.text and "Wants a refi." in say.text
    assert "Press 1 to connect" in say.text


def test_rep_join_starts_the_conference() -> None:
    root = parse(twiml.rep_join(room=ROOM))
    conference = root[0].find("Conference")
    assert conference is not None and conference.text == "pl-42"
    assert conference.attrib["startConferenceOnEnter"] == "true"
    assert conference.attrib["endConferenceOnExit"] == "true"
    assert "waitUrl" not in conference.attrib
    assert conference.attrib["participantLabel"] == "rep"


def test_fallback_offers_a_callback() -> None:
    root = parse(twiml.fallback(text=Policy(business_name="Acme").fallback(), gather_url=GATHER))
    assert verbs(root) == ["Gather", "Say", "Hangup"]
    say = root[0].find("Say")
    assert say is not None and "Press 1" in (say.text or "")
    assert root[0].attrib["actionOnEmptyResult"] == "true"


def test_opt_out_prompt_voicemail_and_hangup() -> None:
    root = parse(twiml.opt_out_prompt(prompt="Press 9 to stop.", gather_url=GATHER))
    assert verbs(root) == ["Gather", "Hangup"]
    assert root[0].attrib["numDigits"] == "1"
    root = parse(twiml.voicemail(text="Hi Jane, call us back."))
    assert verbs(root) == ["Say", "Hangup"]
    assert verbs(parse(twiml.hangup())) == ["Hangup"]
    root = parse(twiml.hangup("Goodbye & thanks <3"))
    assert root[0].text == "Goodbye & thanks <3"


def test_for_action_renders_each_twiml_action() -> None:
    lead = parse(twiml.for_action(JoinConference("CA1", "lead", "pl-42"), room=ROOM))
    conference = lead[0].find("Conference")
    assert conference is not None and conference.attrib["startConferenceOnEnter"] == "false"
    rep = parse(twiml.for_action(JoinConference("CA2", "rep", "pl-42"), room=ROOM))
    conference = rep[0].find("Conference")
    assert conference is not None and conference.attrib["startConferenceOnEnter"] == "true"
    assert verbs(parse(twiml.for_action(Hangup("CA1", "Bye"), room=ROOM))) == ["Say", "Hangup"]
    assert verbs(parse(twiml.for_action(LeaveVoicemail("CA1", "Hi"), room=ROOM))) == [
        "Say",
        "Hangup",
    ]
    offer = OfferCallback("CA1", "Press 1")
    assert verbs(parse(twiml.for_action(offer, room=ROOM, gather_url=GATHER)))[0] == "Gather"
    with pytest.raises(ValueError, match="gather_url"):
        twiml.for_action(offer, room=ROOM)
