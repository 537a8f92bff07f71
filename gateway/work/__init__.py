"""Durable work: rows in the database owe jobs, and Redis carries the jobs that do them.

- `kinds`: each kind of work and the rule that names its jobs.
- `staging`: `stage()` within the caller's transaction; the hand-off to Redis after its commit
  (`gateway.db.transaction`), for session factories bound to Redis with `bind()`.
- `registry`: `@job(kind, due=...)` beside each job function; the worker runs what registered.
- `sweep`: the one cron that re-finds owed work by each kind's due query.
- `owed`: how the sweep enqueues many jobs at once without doubling a live one.
- `runs`: a drain's run, batch by batch, one an argument at a time.
"""

from gateway.work.kinds import (
    EMAIL_SEND,
    KEY_USED,
    PARTY_LINE_RUN,
    PLAY_ADVANCE,
    PLAY_REPLY,
    PLAYS_DUE,
    SMS_INBOX,
    SMS_SEND,
    SMS_SENDS,
    SMS_STATUSES,
    WEBHOOK_DELIVER,
    Kind,
)
from gateway.work.registry import job
from gateway.work.staging import bind, enqueue_now, hand_off, stage

__all__ = [
    "EMAIL_SEND",
    "KEY_USED",
    "PARTY_LINE_RUN",
    "PLAYS_DUE",
    "PLAY_ADVANCE",
    "PLAY_REPLY",
    "SMS_INBOX",
    "SMS_SEND",
    "SMS_SENDS",
    "SMS_STATUSES",
    "WEBHOOK_DELIVER",
    "Kind",
    "bind",
    "enqueue_now",
    "hand_off",
    "job",
    "stage",
]
