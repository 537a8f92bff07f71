"""The party line's Twilio URLs, and the TwiML documents that need them.

Every callback URL names its party line (`pl`) and, for a call, its leg (`leg=lead-1`), so a
callback finds its party line and leg even before the job that placed the call has stored
the CallSid. The URLs are built on PUBLIC_BASE_URL, the URL Twilio signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from voice import twiml
from voice.events import Prompt

PREFIX = "/twilio/voice"
STATUS_PATH = f"{PREFIX}/status"
AMD_PATH = f"{PREFIX}/amd"
ANSWER_PATH = f"{PREFIX}/answer"
WHISPER_PATH = f"{PREFIX}/whisper"
LEAD_GATHER_PATH = f"{PREFIX}/lead-gather"
REP_GATHER_PATH = f"{PREFIX}/rep-gather"
CONFERENCE_PATH = f"{PREFIX}/conference"
INBOUND_PATH = PREFIX


@dataclass(frozen=True)
class Links:
    """URLs of one party line's callbacks."""

    base_url: str
    party_line_id: str

    def _url(self, path: str, **query: str) -> str:
        return f"{self.base_url}{path}?{urlencode({'pl': self.party_line_id, **query})}"

    def status(self, leg: str) -> str:
        """Call-progress StatusCallback."""
        return self._url(STATUS_PATH, leg=leg)

    def amd(self, leg: str) -> str:
        """AsyncAmdStatusCallback."""
        return self._url(AMD_PATH, leg=leg)

    def answer(self, leg: str) -> str:
        """The lead call's Url: greeting, then the conference."""
        return self._url(ANSWER_PATH, leg=leg)

    def whisper(self, leg: str) -> str:
        """The rep call's Url: the whisper and "press 1"."""
        return self._url(WHISPER_PATH, leg=leg)

    def lead_gather(self, leg: str, prompt: Prompt) -> str:
        """The lead's Gather action (greeting: 9 opts out; fallback: 1 asks for a callback)."""
        return self._url(LEAD_GATHER_PATH, leg=leg, prompt=prompt)

    def rep_gather(self, leg: str) -> str:
        """The rep's whisper Gather action."""
        return self._url(REP_GATHER_PATH, leg=leg)

    def conference(self) -> str:
        """The conference statusCallback."""
        return self._url(CONFERENCE_PATH)

    def room(self, name: str) -> twiml.Room:
        """The conference; no waitUrl: Twilio's default wait music is the hold music."""
        return twiml.Room(name=name, status_callback=self.conference())
