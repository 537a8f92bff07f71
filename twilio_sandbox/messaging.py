"""Messages: create and deliver SMS, inbound texts from phones, and the STOP list."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from twilio_sandbox.record import CallbackEntry
from twilio_sandbox.wire import (
    API_VERSION,
    Form,
    TwilioError,
    is_e164,
    new_sid,
    parse_date_filter,
    rfc2822,
    segments,
)

if TYPE_CHECKING:
    from twilio_sandbox.sandbox import Sandbox

OnAnswer = Callable[[CallbackEntry], Coroutine[Any, Any, None]]

# Twilio's default opt-out handling on long codes ("SMS STOP filtering"): the whole body, trimmed,
# any case. Keywords and replies as Twilio documents them in "Twilio support for opt-out keywords
# (SMS STOP filtering)", https://support.twilio.com/hc/en-us/articles/223134027 (now on
# help.twilio.com); REVOKE and OPTOUT are in the STOP list of
# https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out.
STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
START_WORDS = {"START", "YES", "UNSTOP"}
HELP_WORDS = {"HELP", "INFO"}
# What Twilio itself texts back to each kind of keyword (its "standard replies").
KEYWORD_REPLIES = {
    "STOP": "You have successfully been unsubscribed. You will not receive any more messages "
    "from this number. Reply START to resubscribe.",
    "START": "You have successfully been re-subscribed to messages from this number. "
    "Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
    "HELP": "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}
# The direction Twilio gives a message it sends in answer to an inbound one.
REPLY_DIRECTION = "outbound-reply"
FINAL = {"delivered", "undelivered", "failed", "received"}
# A status callback the sandbox owed when it stopped is sent again after a restart: first after
# this many seconds (the gateway serving it starts listening once its startup is done), then
# again after each of the waits below while the receiver does not answer 2xx.
RESUME_AFTER = 1.0
RESEND_WAITS = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass
class Message:
    sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    direction: str  # outbound-api | inbound
    status: str
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    status_callback: str | None = None
    messaging_service_sid: str | None = None
    media_urls: list[str] = field(default_factory=list)
    validity_period: int | None = None
    error_code: int | None = None

    def to_state(self) -> dict[str, Any]:
        """Every field, JSON-ready: what the sandbox's store keeps."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("date_created", "date_updated", "date_sent"):
            value = state[name]
            state[name] = value.isoformat() if value is not None else None
        state["from"] = state.pop("from_")
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Message:
        values = dict(state)
        values["from_"] = values.pop("from")
        for name in ("date_created", "date_updated", "date_sent"):
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": ERROR_TEXT.get(self.error_code or 0),
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": self.to,
            "uri": f"{base}.json",
        }


ERROR_TEXT = {
    30003: "Unreachable destination handset",
    30006: "Landline or unreachable carrier",
}


class Messaging:
    """Every message the sandbox knows, outbound and inbound."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox
        self.messages: dict[str, Message] = {}
        # (phone, our number) pairs where the phone texted STOP, as Twilio keeps them.
        self.opted_out: set[tuple[str, str]] = set()

    # -- REST ---------------------------------------------------------------

    def create(self, params: Form) -> Message:
        """Messages.create: validate like Twilio, queue, and schedule delivery."""
        sb = self._sb
        to = params.get("To", "")
        if not to:
            raise TwilioError(21201)
        if not is_e164(to):
            raise TwilioError(21211, value=to)
        service = params.get("MessagingServiceSid") or None
        sender = params.get("From", "")
        if not sender and service:
            sender = next(iter(sb.numbers), "")
        if sender not in sb.numbers:
            raise TwilioError(21606 if is_e164(sender) else 21212, value=sender)
        body = params.get("Body", "")
        media = params.getall("MediaUrl")
        if not body and not media:
            raise TwilioError(21602)
        if (to, sender) in self.opted_out:
            raise TwilioError(21610)
        phone = sb.phones.get(to)
        if sb.check_line_type and phone.script.line_type == "landline":
            raise TwilioError(21614)
        now = sb.clock.now()
        validity = params.get("ValidityPeriod")
        msg = Message(
            sid=new_sid("SM"),
            account_sid=sb.account_sid,
            from_=sender,
            to=to,
            body=body,
            direction="outbound-api",
            status="queued" if not service else "accepted",
            date_created=now,
            date_updated=now,
            status_callback=params.get("StatusCallback") or None,
            messaging_service_sid=service,
            media_urls=media,
            validity_period=int(validity) if validity else None,
        )
        sb.persist_new_message(msg)  # durable before the answer says Twilio has it
        self.messages[msg.sid] = msg
        sb.scheduler.spawn(lambda: self._deliver(msg))
        return msg

    def get(self, sid: str) -> Message:
        if sid not in self.messages:
            raise TwilioError(20404, status=404, path=f"/Messages/{sid}.json")
        return self.messages[sid]

    def search(self, query: list[tuple[str, str]]) -> list[Message]:
        """Messages.list filters: To, From, DateSent, DateSent< (on or before), DateSent>."""
        found = sorted(self.messages.values(), key=lambda m: m.date_created, reverse=True)
        for key, value in query:
            if key in ("To", "From"):
                attr = "to" if key == "To" else "from_"
                found = [m for m in found if getattr(m, attr) == value]
            elif key in ("DateSent", "DateSent<", "DateSent>"):
                bound = parse_date_filter(value)
                found = [m for m in found if _date_ok(m.date_sent, bound, key[-1])]
        return found

    # -- lifecycle ----------------------------------------------------------

    async def _deliver(self, msg: Message) -> None:
        sb = self._sb
        await sb.scheduler.sleep(0.5)
        msg.date_sent = sb.clock.now()
        self._set(msg, "sent")
        await self._arrive(msg)

    async def _arrive(self, msg: Message) -> None:
        """From `sent` on: the handset gets it (or not), then maybe replies."""
        sb = self._sb
        phone = sb.phones.get(msg.to)
        await sb.scheduler.sleep(phone.script.delivery_after)
        if phone.script.unreachable:
            self._set(msg, "undelivered", 30003)
            return
        if phone.script.line_type == "landline":
            self._set(msg, "undelivered", 30006)
            return
        self._set(msg, "delivered")
        if msg.direction == REPLY_DIRECTION:
            return  # a phone's scripted replies answer the gateway's texts, not Twilio's own
        reply = phone.next_reply()
        if reply is not None:
            await sb.scheduler.sleep(reply.after)
            self.receive(msg.to, msg.from_, reply.body)

    def _set(self, msg: Message, status: str, error: int | None = None) -> None:
        msg.status = status
        msg.error_code = error
        msg.date_updated = self._sb.clock.now()
        params = self._status_params(msg)
        self._sb.persist_message(msg)
        self._sb.webhooks.post(
            msg.sid,
            "sms.status",
            msg.status_callback,
            params,
            on_answer=self._answered(msg.sid, status),
        )

    def _status_params(self, msg: Message) -> dict[str, str]:
        params = {
            "AccountSid": msg.account_sid,
            "ApiVersion": API_VERSION,
            "From": msg.from_,
            "MessageSid": msg.sid,
            "MessageStatus": msg.status,
            "SmsSid": msg.sid,
            "SmsStatus": msg.status,
            "To": msg.to,
        }
        if msg.messaging_service_sid:
            params["MessagingServiceSid"] = msg.messaging_service_sid
        if msg.error_code is not None:
            params["ErrorCode"] = str(msg.error_code)
        return params

    def _answered(self, sid: str, status: str) -> OnAnswer:
        async def note(entry: CallbackEntry) -> None:
            if entry.status is not None and 200 <= entry.status < 300:
                self._sb.persist_callback_answered(sid, status)

        return note

    # -- after a restart ----------------------------------------------------

    def restore(self, msg: Message, answered: str | None) -> None:
        """A message the store kept: known again, and its life goes on where it stopped.

        Real Twilio does not die with the gateway: it would have sent the status callback in
        flight and moved the message on. So the callback of its current status is sent again
        unless the receiver had answered it 2xx, and an outbound message not yet final is
        delivered from its current status (its remaining callbacks follow)."""
        self.messages[msg.sid] = msg
        if msg.direction == "inbound":
            return
        owed = msg.status_callback is not None and answered != msg.status
        if owed or msg.status not in FINAL:
            self._sb.scheduler.spawn(lambda: self._resume(msg, owed), RESUME_AFTER)

    async def _resume(self, msg: Message, owed: bool) -> None:
        sb = self._sb
        if owed and msg.status_callback and msg.status not in ("queued", "accepted"):
            # Twilio sends no callback for queued/accepted: only a real status is owed.
            for wait in (*RESEND_WAITS, None):
                entry = await sb.webhooks.fetch(
                    "sms.status", msg.status_callback, self._status_params(msg)
                )
                if entry.status is not None and 200 <= entry.status < 300:
                    sb.persist_callback_answered(msg.sid, msg.status)
                    break
                if wait is None or (entry.error or "").startswith("refused"):
                    break
                await sb.scheduler.sleep(wait)
        if msg.status in ("queued", "accepted"):
            await self._deliver(msg)
        elif msg.status == "sent":
            await self._arrive(msg)

    # -- inbound ------------------------------------------------------------

    def receive(
        self, from_: str, to: str, body: str, media_urls: list[str] | None = None
    ) -> Message:
        """A phone texts one of our numbers: keep the STOP list, then call the SMS webhook."""
        sb = self._sb
        owned = sb.numbers.get(to)
        if owned is None:
            raise TwilioError(21606, value=to)
        media = media_urls or []
        now = sb.clock.now()
        msg = Message(
            new_sid("SM"),
            sb.account_sid,
            from_,
            to,
            body,
            "inbound",
            "received",
            now,
            now,
            date_sent=now,
            media_urls=media,
        )
        sb.persist_new_message(msg)
        self.messages[msg.sid] = msg
        word = body.strip().upper()
        opt_out_type = None
        if word in STOP_WORDS:
            if sb.filters_stop(to):
                self.opted_out.add((from_, to))
                sb.persist_opt_out(from_, to, opted_out=True)
            opt_out_type = "STOP"
        elif word in START_WORDS:
            self.opted_out.discard((from_, to))
            sb.persist_opt_out(from_, to, opted_out=False)
            opt_out_type = "START"
        elif word in HELP_WORDS:
            opt_out_type = "HELP"
        params = {
            "AccountSid": sb.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": msg.sid,
            "NumMedia": str(len(media)),
            "NumSegments": str(segments(body)),
            "SmsMessageSid": msg.sid,
            "SmsSid": msg.sid,
            "SmsStatus": "received",
            "To": to,
        }
        for i, url in enumerate(media):
            params[f"MediaUrl{i}"] = url
            params[f"MediaContentType{i}"] = "image/jpeg"
        if owned.messaging_service_sid:
            params["MessagingServiceSid"] = owned.messaging_service_sid
        if sb.advanced_opt_out and opt_out_type is not None:
            # Only Advanced Opt-Out (a Messaging Service setting) adds it; Twilio's default
            # handling answers the keyword but forwards the text without it.
            params["OptOutType"] = opt_out_type
        if opt_out_type is not None and sb.answers_keywords(to):
            self._answer_keyword(from_, owned.number, opt_out_type, owned.messaging_service_sid)
        sb.webhooks.post(
            msg.sid,
            "sms.inbound",
            owned.sms_url,
            params,
            method=owned.sms_method,
            on_answer=self._reply_from_twiml,
        )
        return msg

    def _answer_keyword(
        self, phone: str, number: str, kind: str, messaging_service_sid: str | None
    ) -> Message:
        """Twilio's own reply to STOP, START or HELP: sent from our number whether or not the
        phone is now opted out (it is Twilio's confirmation, not a send the blocklist stops),
        with no status callback, and still forwarded to the webhook as any text is."""
        sb = self._sb
        now = sb.clock.now()
        reply = Message(
            new_sid("SM"),
            sb.account_sid,
            number,
            phone,
            KEYWORD_REPLIES[kind],
            REPLY_DIRECTION,
            "queued",
            now,
            now,
            messaging_service_sid=messaging_service_sid,
        )
        sb.persist_new_message(reply)
        self.messages[reply.sid] = reply
        sb.scheduler.spawn(lambda: self._deliver(reply))
        return reply

    def conversation(self, phone: str) -> list[Message]:
        """Every text a phone sent to our numbers or got from them (Twilio's own replies
        included), oldest first: what the phone's screen shows."""
        found = [m for m in self.messages.values() if phone in (m.to, m.from_)]
        return sorted(found, key=lambda m: m.date_created)

    async def _reply_from_twiml(self, entry: CallbackEntry) -> None:
        """Send the <Message> replies of a messaging TwiML answer, as Twilio does."""
        if not entry.status or entry.status >= 300 or "<Message" not in entry.body:
            return
        try:
            root = ET.fromstring(entry.body)
        except ET.ParseError:
            return
        for node in root.iter("Message"):
            text = node.findtext("Body") if node.find("Body") is not None else node.text
            form = Form(
                [
                    ("To", node.get("to") or entry.params["From"]),
                    ("From", node.get("from") or entry.params["To"]),
                    ("Body", (text or "").strip()),
                    ("StatusCallback", node.get("statusCallback") or ""),
                ]
            )
            try:
                self.create(form)
            except TwilioError:
                continue  # Twilio drops a TwiML reply it cannot send (e.g. opted out)


def _date_ok(sent: datetime | None, bound: datetime | date, op: str) -> bool:
    if sent is None:
        return False
    left: datetime | date = sent if isinstance(bound, datetime) else sent.date()
    if op == "<":
        return left <= bound
    if op == ">":
        return left >= bound
    return left == bound
