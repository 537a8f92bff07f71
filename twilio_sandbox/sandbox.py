"""The Sandbox: a local Twilio for tests, `gateway run` and benchmarks.

sandbox = Sandbox(account_sid, auth_token)
sandbox.add_number("+15005550006", sms_url=".../twilio/sms", voice_url=".../twilio/voice")
sandbox.phones.script("+15551230001", answer_after=2, digits=["1"])
# serve sandbox.app (ASGI); point build_twilio_client(..., api_base_url=<its URL>) at it
await sandbox.advance(5)   # or sandbox.start_realtime()
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType

from starlette.applications import Starlette

from twilio_sandbox.callbacks import Webhooks, under_base
from twilio_sandbox.calls import Call, Calls
from twilio_sandbox.conferences import Conferences
from twilio_sandbox.control import ControlApi
from twilio_sandbox.faults import Faults
from twilio_sandbox.messaging import Message, Messaging
from twilio_sandbox.phones import PhoneBook
from twilio_sandbox.record import Record
from twilio_sandbox.rest import RestApi
from twilio_sandbox.scheduler import Scheduler, VirtualClock
from twilio_sandbox.store import SandboxStore
from twilio_sandbox.twiml import Twiml
from twilio_sandbox.wire import TwilioError

_log = logging.getLogger("twilio_sandbox")


@dataclass
class OwnedNumber:
    """A number the gateway owns on the sandbox, with its webhooks (as in Twilio's console)."""

    number: str
    sms_url: str | None = None
    sms_method: str = "POST"
    voice_url: str | None = None
    voice_method: str = "POST"
    voice_status_callback: str | None = None
    messaging_service_sid: str | None = None
    sid: str = field(default_factory=lambda: "PN" + secrets.token_hex(16))
    # Does Twilio answer STOP, START and HELP on this number itself, and keep its STOP list
    # ("SMS STOP filtering": 21610 after STOP)? None: the sandbox's default.
    keyword_replies: bool | None = None
    stop_filtering: bool | None = None


@dataclass
class MessagingService:
    """A Messaging Service of the account and the numbers in its sender pool."""

    sid: str
    friendly_name: str = ""
    numbers: list[str] = field(default_factory=list)


class Sandbox:
    """A local Twilio: REST API, scripted phones, signed callbacks, virtual time."""

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        *,
        start: datetime | None = None,
        check_line_type: bool = False,
        advanced_opt_out: bool = False,
        keyword_replies: bool = True,
        stop_filtering: bool = True,
        rate_limit: float | None = None,
        realtime: bool = False,
        speed: float = 1.0,
        callback_timeout: float = 15.0,
        callback_base: str | Callable[[], str] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """`rate_limit`: REST requests per virtual second before 20429; `realtime`:
        drive time from the wall clock once the app starts (standalone serving);
        `callback_base`: the only URL prefix callbacks may go to (the gateway's own public
        URL when it serves the sandbox, or a function that reads it), so nobody can point the
        sandbox elsewhere; `state_dir`: keep messages, numbers, services and the STOP list in
        a SQLite file there (`store.py`) and start from what it holds, so a sandbox that died
        still knows what it had accepted (in memory only without it); `keyword_replies`: Twilio
        answers STOP, START and HELP itself, as its default opt-out handling does on long codes
        (a number's own `keyword_replies` overrides it); `stop_filtering`: a STOP puts the phone
        on the STOP list (later creates answer 21610) until START, also per number; both off is
        a Twilio account whose default opt-out handling is off; `advanced_opt_out`: the inbound
        webhook also carries `OptOutType`, as with a Messaging Service's Advanced Opt-Out."""
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.check_line_type = check_line_type
        self.advanced_opt_out = advanced_opt_out
        self.keyword_replies = keyword_replies
        self.stop_filtering = stop_filtering
        self.rate_limit = rate_limit
        self._callback_base = callback_base
        self.numbers: dict[str, OwnedNumber] = {}
        self.services: dict[str, MessagingService] = {}
        self.clock = VirtualClock(start)
        self.scheduler = Scheduler(self.clock)
        self.record = Record()
        self.faults = Faults()
        self.phones = PhoneBook()
        self.webhooks = Webhooks(
            self.auth_token,
            self.record,
            self.faults,
            self.scheduler,
            callback_timeout,
            callback_base=lambda: self.callback_base,
        )
        self.messaging = Messaging(self)
        self.calls = Calls(self)
        self.conferences = Conferences(self)
        self.twiml = Twiml(self)
        self._realtime, self._speed = realtime, speed
        self.store: SandboxStore | None = None
        if state_dir is not None:
            self.store = SandboxStore(state_dir)
            self._restore(self.store)
        self.app = Starlette(
            routes=[*RestApi(self).routes(), *ControlApi(self).routes()],
            lifespan=self._lifespan,
        )

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        if self._realtime:
            self.start_realtime(self._speed)
        try:
            yield
        finally:
            await self.aclose()

    # -- wiring -------------------------------------------------------------

    def add_number(
        self,
        number: str,
        *,
        sms_url: str | None = None,
        sms_method: str = "POST",
        voice_url: str | None = None,
        voice_method: str = "POST",
        voice_status_callback: str | None = None,
        messaging_service_sid: str | None = None,
        keyword_replies: bool | None = None,
        stop_filtering: bool | None = None,
    ) -> OwnedNumber:
        """Give the account a number (bought, as in Twilio's console) and set where its inbound
        SMS and calls go; with `messaging_service_sid`, the number joins that service's pool;
        `keyword_replies` and `stop_filtering` (None: the sandbox's default) say whether Twilio
        answers STOP, START and HELP on it and keeps its STOP list."""
        before = self.numbers.get(number)
        owned = OwnedNumber(
            number,
            sms_url,
            sms_method,
            voice_url,
            voice_method,
            voice_status_callback,
            messaging_service_sid,
            keyword_replies=keyword_replies,
            stop_filtering=stop_filtering,
        )
        if before is not None:
            owned.sid = before.sid  # the same number keeps its PN SID when reconfigured
        self.numbers[number] = owned
        self._persist(lambda store: store.put_number(self.account_sid, number, asdict(owned)))
        if messaging_service_sid is not None:
            service = self.add_service(messaging_service_sid)
            if number not in service.numbers:
                service.numbers.append(number)
                self._persist_service(service)
        return owned

    def set_opt_out_handling(
        self, number: str, *, keyword_replies: bool | None, stop_filtering: bool | None
    ) -> None:
        """Turn Twilio's own STOP/START/HELP answers and its STOP list on or off for one number
        (None: the sandbox's default); both off is what Twilio support does when asked to turn
        an account's default opt-out handling off."""
        owned = self.numbers.get(number)
        if owned is None:
            raise TwilioError(21606, value=number)
        owned.keyword_replies, owned.stop_filtering = keyword_replies, stop_filtering
        self._persist(lambda store: store.put_number(self.account_sid, number, asdict(owned)))

    def answers_keywords(self, number: str) -> bool:
        """Does Twilio answer STOP, START and HELP texted to this number itself?"""
        owned = self.numbers.get(number)
        own = owned.keyword_replies if owned is not None else None
        return self.keyword_replies if own is None else own

    def filters_stop(self, number: str) -> bool:
        """Does a STOP texted to this number put the phone on Twilio's STOP list?"""
        owned = self.numbers.get(number)
        own = owned.stop_filtering if owned is not None else None
        return self.stop_filtering if own is None else own

    def add_service(self, sid: str | None = None, friendly_name: str = "") -> MessagingService:
        """Give the account a Messaging Service (or return the one it has with this SID)."""
        sid = sid or "MG" + secrets.token_hex(16)
        if sid not in self.services:
            self.services[sid] = MessagingService(sid, friendly_name or sid)
            self._persist_service(self.services[sid])
        return self.services[sid]

    # -- state on disk (with `state_dir`) --------------------------------------

    def _restore(self, store: SandboxStore) -> None:
        state = store.load(self.account_sid)
        for number in state.numbers:
            self.numbers[number["number"]] = OwnedNumber(**number)
        for service in state.services:
            self.services[service["sid"]] = MessagingService(**service)
        self.messaging.opted_out.update(state.opted_out)
        for stored in state.messages:
            self.messaging.restore(Message.from_state(stored.data), stored.answered)
        if state.messages:
            _log.info("sandbox restored %d messages from %s", len(state.messages), store.path)

    def _persist(self, write: Callable[[SandboxStore], None]) -> None:
        """A change the store should keep; a failure to keep it is logged, memory goes on."""
        if self.store is None:
            return
        try:
            write(self.store)
        except sqlite3.Error as exc:
            _log.warning("sandbox store %s: %s", self.store.path, exc)

    def _persist_service(self, service: MessagingService) -> None:
        data = asdict(service)
        self._persist(lambda store: store.put_service(self.account_sid, service.sid, data))

    def persist_new_message(self, msg: Message) -> None:
        """Keep a message Twilio has just taken before saying so: if it cannot be kept, the
        create fails (500, as Twilio's would) rather than be forgotten by a crash."""
        if self.store is None:
            return
        try:
            self.store.add_message(self.account_sid, msg.to_state())
        except sqlite3.Error as exc:
            _log.error("sandbox store %s: %s", self.store.path, exc)
            raise TwilioError(20500, status=500) from exc

    def persist_message(self, msg: Message) -> None:
        """Keep a message's new status."""
        self._persist(lambda store: store.update_message(msg.to_state()))

    def persist_callback_answered(self, sid: str, status: str) -> None:
        self._persist(lambda store: store.callback_answered(sid, status))

    def persist_opt_out(self, phone: str, number: str, *, opted_out: bool) -> None:
        self._persist(lambda store: store.set_opted_out(self.account_sid, phone, number, opted_out))

    @property
    def callback_base(self) -> str | None:
        """The URL prefix every callback must start with; None: anywhere (tests' receivers)."""
        base = self._callback_base
        return base() if callable(base) else base

    def callback_allowed(self, url: str | None) -> bool:
        """May the sandbox call this URL back? Any URL without a `callback_base`."""
        return not url or self.callback_base is None or under_base(url, self.callback_base)

    # -- acting as the phones -----------------------------------------------

    def send_sms(
        self, from_: str, to: str, body: str, media_urls: list[str] | None = None
    ) -> Message:
        """A phone texts one of our numbers (STOP here puts it on the opt-out list)."""
        return self.messaging.receive(from_, to, body, media_urls)

    def place_call(self, from_: str, to: str) -> Call:
        """A phone calls one of our numbers; its voice URL's TwiML runs."""
        return self.calls.receive(from_, to)

    # -- time -----------------------------------------------------------------

    def now(self) -> datetime:
        """Virtual now; pass `sandbox.now` to `gateway.clock.set_clock` to share it."""
        return self.clock.now()

    async def advance(self, seconds: float) -> None:
        """Run everything due in the next `seconds` of virtual time, callbacks included."""
        await self.scheduler.advance(seconds)

    async def settle(self, limit_seconds: float = 24 * 3600.0) -> None:
        """Run until nothing is left to do (bounded by `limit_seconds` of virtual time)."""
        await self.scheduler.settle(limit_seconds)

    def start_realtime(self, speed: float = 1.0) -> None:
        """Let virtual time follow the wall clock (times `speed`) from now on."""
        self.scheduler.start_realtime(speed)

    # -- lifetime -------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop processes and the real-time driver, release hanging requests, close HTTP."""
        self.faults.released.set()
        await self.scheduler.aclose()
        await self.webhooks.aclose()
        if self.store is not None:
            self.store.close()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
