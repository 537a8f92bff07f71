"""A local Twilio: the REST API, scripted phones and signed callbacks, on virtual time."""

from gateway.sandbox.faults import CallbackFault, RestFault
from gateway.sandbox.phones import PhoneScript, Reply
from gateway.sandbox.record import CallbackEntry, Record, RequestEntry
from gateway.sandbox.sandbox import OwnedNumber, Sandbox

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
