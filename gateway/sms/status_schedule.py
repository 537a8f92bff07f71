"""When a sent text without a final status is checked with Twilio
(gateway/jobs/sms_status_checks.py).

Status callbacks are Twilio's only push: one that meets the gateway down is lost for good (Twilio
does not send it again), and the message would stay `accepted` or `sent` for ever. So a message
that has had no final status for a while is fetched by its SID: first a few minutes after its
last status change, then backing off, and never past a bound (some carriers never report
`delivered`; such a text ends `sent`, with the end of its checks in its history).

Times count from the message's last status change (`updated_at`): a check that moves it (say to
`sent`) starts the schedule again from there, one that finds nothing new keeps its place.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# The gap before each check: the first 5 minutes after the last status change (a callback that
# was merely slow has come by then), then 15 min, 1 h, 4 h, and every 12 h after that.
CHECK_GAPS: tuple[timedelta, ...] = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
    timedelta(hours=12),
)
# No check is planned past this long after the last status change; one last check is made at
# it, and a message still without a final status then is recorded as such and left alone.
CHECKS_END = timedelta(hours=72)
FIRST_CHECK = CHECK_GAPS[0]


def _offsets() -> tuple[timedelta, ...]:
    """Every check's time after the last status change: 5 min, 20 min, 1 h 20 min, 5 h 20 min,
    17 h 20 min, then every 12 h, and a last one at CHECKS_END."""
    found: list[timedelta] = []
    at = timedelta(0)
    index = 0
    while True:
        at += CHECK_GAPS[min(index, len(CHECK_GAPS) - 1)]
        index += 1
        if at >= CHECKS_END:
            found.append(CHECKS_END)
            return tuple(found)
        found.append(at)


CHECK_OFFSETS = _offsets()


def first_check(changed_at: datetime) -> datetime:
    """When a message whose status just changed (to a status that is not final) is first
    checked."""
    return changed_at + FIRST_CHECK


def next_check(changed_at: datetime, moment: datetime) -> datetime | None:
    """The next check after `moment` of a message whose status last changed at `changed_at`;
    None once the schedule is over (CHECKS_END has passed).

    Stateless on purpose: a worker that was down for a day checks such a message once when it
    comes back, then goes on from where the schedule stands, instead of replaying the checks it
    missed."""
    elapsed = moment - changed_at
    for offset in CHECK_OFFSETS:
        if offset > elapsed:
            return changed_at + offset
    return None
