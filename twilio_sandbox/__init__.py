"""A local Twilio: the REST API, scripted phones and signed callbacks, on virtual time."""

from twilio_sandbox.faults import CallbackFault, RestFault
from twilio_sandbox.phones import PhoneScript, Reply
from twilio_sandbox.record import CallbackEntry, Record, RequestEntry
from twilio_sandbox.sandbox import OwnedNumber, Sandbox

__all__ = [
    "CallbackEntry",
    "CallbackFault",
    "OwnedNumber",
    "PhoneScript",
    "Record",
    "Reply",
    "RequestEntry",
    "RestFault",
    "Sandbox",
]
