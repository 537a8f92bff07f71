"""Kinds of durable work, and the one rule that names their arq jobs.

A kind is what a row in the database can owe: a text to send (`sms.send`), an email, a webhook
delivery, a play to advance, an inbound text or a status callback to act on, a reply to hand to
the plays, a party line to run. The database says what is owed; Redis only carries jobs to get
it done sooner, so the job id is what makes a second enqueue of the same work a no-op (arq
refuses an id while it is live).

Job id: `<prefix>:<argument>`, then `:<variant>` where one row owes a new job per change (a
party line's version), then `@<unix time>` for a job deferred to that moment, so a deferral
made by a running job is not refused as a duplicate of the job making it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# Work due further out than this stays in the database for the sweep, not in Redis: Redis
# holds no long-dated jobs, so a flush loses nothing and a burst worker never waits for
# tomorrow. Read as `kinds.MAX_DEFER_SECONDS` (tests set it to 0 to send every wait through
# the sweep).
MAX_DEFER_SECONDS = 30.0


@dataclass(frozen=True)
class Kind:
    """A kind of work: the arq job that does it and the prefix of its job ids.

    `drains`: the job's argument names many rows (a webhook subscription), and one run works
    through every row it owes, in batches, until a claim finds nothing. `coalesce_seconds`: a
    drain staged by commit after commit is enqueued from a process at most twice in this long
    (`gateway.work.staging`): longer for work nobody waits on, so that a run finds more."""

    name: str  # the arq function name, e.g. "sms.send"
    prefix: str  # job ids are "<prefix>:<argument>..."
    drains: bool = False
    coalesce_seconds: float = 0.05
    # The drain that takes this work in batches when it goes to Redis due now: staged with a
    # `batch` (the drain's argument, e.g. the text's account), it is handed over as that drain
    # instead of a job of its own (`gateway.work.staging`). Deferred work keeps its own job.
    batched_by: Kind | None = None

    def job_id(
        self, argument: str, *, variant: str | int | None = None, at: datetime | None = None
    ) -> str:
        job_id = f"{self.prefix}:{argument}"
        if variant is not None:
            job_id = f"{job_id}:{variant}"
        if at is not None:
            job_id = f"{job_id}@{int(at.timestamp())}"
        return job_id


# Every kind, in one place at the bottom: a kind is staged from layers below the job that does
# it (the engine stages texts, the opt-out ledger stages webhook deliveries).
# A text's send. Due now and handed to Redis, it goes as its account's `sms.sends` drain, which
# gates, claims and sends the account's due texts in batches; deferred (the gate, a rate slot, a
# back-off), run inline, or reconciling a row left `sending`, it is a job of its own.
SMS_SENDS = Kind("sms.sends", "sends", drains=True)  # by account
SMS_SEND = Kind("sms.send", "sms", batched_by=SMS_SENDS)
EMAIL_SEND = Kind("email.send", "email")
WEBHOOK_DELIVER = Kind("webhooks.deliver", "webhook", drains=True)  # by subscription
# A play's due steps. Due now and handed to Redis (the sweep found it due, a process had no
# room to run it inline), it goes as its account's `plays.due` drain, which runs the account's
# due plays in batches; deferred (a step's delay, up to MAX_DEFER_SECONDS) or run inline, it is
# a job of its own.
PLAYS_DUE = Kind("plays.due", "plays", drains=True)  # by account
PLAY_ADVANCE = Kind("plays.advance", "play", batched_by=PLAYS_DUE)
PLAY_REPLY = Kind("plays.reply", "reply")
SMS_INBOX = Kind("sms.inbox", "inbox", drains=True)  # inbound texts, appended by their webhook
# Status callbacks, appended the same way. Nobody waits on one, and a lead's text brings two:
# at 30 leads a second, a run every 50 ms took about three, and the job's own cost was most of
# the worker's per callback.
SMS_STATUSES = Kind("sms.statuses", "statuses", drains=True, coalesce_seconds=0.5)
PARTY_LINE_RUN = Kind("party_lines.run", "pl")
KEY_USED = Kind("keys.mark_used", "keys.mark_used")
