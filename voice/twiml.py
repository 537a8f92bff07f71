"""TwiML documents of the party line, built with the twilio library's VoiceResponse.

Every URL comes in as an argument: only the runner knows the public base URL
(and signs nothing it did not build). Conference settings, and why:

* the lead joins with startConferenceOnEnter=false, so it hears the waitUrl hold
  music until someone who starts the conference arrives, and with
  endConferenceOnExit=true, so the conference ends when the lead leaves;
* the rep joins only after pressing 1, with startConferenceOnEnter=true (the
  talk begins, the hold music stops) and endConferenceOnExit=true (the lead is
  not left in silence when the rep hangs up). A rep who never presses 1 never
  joins, so a failed attempt cannot end the conference;
* both ask for the conference callbacks (start end join leave): Twilio uses the
  first participant's settings, and we don't know who will be first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from twilio.twiml.voice_response import Dial, VoiceResponse

from voice.actions import Hangup, JoinConference, LeaveVoicemail, OfferCallback

CONFERENCE_EVENTS = "start end join leave"
GREETING_GATHER_TIMEOUT = 2  # seconds after the prompt: a short pause, then the hold music
FALLBACK_GATHER_TIMEOUT = 6
GOODBYE = "Goodbye."


@dataclass(frozen=True)
class Room:
    """The party line's conference: its name, status callback URL and the lead's hold music."""

    name: str
    status_callback: str
    hold_music_url: str | None = None
    hold_music_method: str = "GET"  # a static file is the usual waitUrl


def _conference(dial: Dial, room: Room, *, lead: bool, label: str) -> None:
    dial.conference(
        room.name,
        start_conference_on_enter=not lead,
        end_conference_on_exit=True,
        beep=False,
        wait_url=room.hold_music_url if lead else None,
        wait_method=room.hold_music_method if lead and room.hold_music_url else None,
        status_callback=room.status_callback,
        status_callback_event=CONFERENCE_EVENTS,
        status_callback_method="POST",
        participant_label=label,
    )


def _text(response: VoiceResponse) -> str:
    return str(response.to_xml())


def lead_answer(
    *,
    greeting: str,
    opt_out_prompt: str,
    gather_url: str,
    room: Room,
) -> str:
    """The lead's call on answer: greeting, "press 9 to stop", then the conference.

    The greeting plays inside the Gather so a keypress can cut it short; with no
    key the document falls through to the conference (hold music until a rep).
    """
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1, action=gather_url, method="POST", timeout=GREETING_GATHER_TIMEOUT
    )
    gather.say(greeting)
    gather.say(opt_out_prompt)
    _conference(response.dial(), room, lead=True, label="lead")
    response.hangup()
    return _text(response)


def opt_out_prompt(*, prompt: str, gather_url: str) -> str:
    """The lead's "press 9 to stop receiving calls" on its own (e.g. after a voicemail greeting)."""
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1, action=gather_url, method="POST", timeout=GREETING_GATHER_TIMEOUT
    )
    gather.say(prompt)
    response.hangup()
    return _text(response)


def lead_join(*, room: Room) -> str:
    """The lead (after a keypress other than 9) joins the conference to wait for a rep."""
    response = VoiceResponse()
    _conference(response.dial(), room, lead=True, label="lead")
    response.hangup()
    return _text(response)


def rep_whisper(*, whisper: str, gather_url: str, timeout: int) -> str:
    """The rep's call on answer: who the lead is, "press 1 to connect".

    actionOnEmptyResult makes silence (voicemail, a rep who walks away) come back
    as an empty Digits, so a timeout is a decision, not a dangling call.
    """
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1,
        action=gather_url,
        method="POST",
        timeout=timeout,
        action_on_empty_result=True,
    )
    gather.say(whisper)
    response.say(GOODBYE)
    response.hangup()
    return _text(response)


def rep_join(*, room: Room) -> str:
    """The rep pressed 1: into the conference (which starts the talk)."""
    response = VoiceResponse()
    _conference(response.dial(), room, lead=False, label="rep")
    response.hangup()
    return _text(response)


def fallback(*, text: str, gather_url: str, timeout: int = FALLBACK_GATHER_TIMEOUT) -> str:
    """No rep took the call: the fallback message and "press 1 for a callback"."""
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1,
        action=gather_url,
        method="POST",
        timeout=timeout,
        action_on_empty_result=True,
    )
    gather.say(text)
    response.say(GOODBYE)
    response.hangup()
    return _text(response)


def voicemail(*, text: str) -> str:
    """A message for the lead's answering machine (AMD reported after the beep), then hang up."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return _text(response)


def hangup(message: str | None = None) -> str:
    """Say `message` (if any) and hang up."""
    response = VoiceResponse()
    if message:
        response.say(message)
    response.hangup()
    return _text(response)


def for_action(
    action: JoinConference | Hangup | LeaveVoicemail | OfferCallback,
    *,
    room: Room,
    gather_url: str | None = None,
) -> str:
    """The TwiML that carries out one of the machine's TwiML actions.

    `gather_url` is the lead's fallback Gather action (needed for OfferCallback).
    """
    match action:
        case JoinConference(role="lead"):
            return lead_join(room=replace(room, name=action.conference_name))
        case JoinConference():
            return rep_join(room=replace(room, name=action.conference_name))
        case Hangup():
            return hangup(action.message)
        case LeaveVoicemail():
            return voicemail(text=action.text)
        case OfferCallback():
            if gather_url is None:
                raise ValueError("OfferCallback needs the fallback gather_url")
            return fallback(text=action.text, gather_url=gather_url)
