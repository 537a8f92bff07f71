"""The opt-out notice as the sender applies it, and the segment warning for playbooks.

The decision is taken when a message is claimed for sending, not when it is queued: a text
queued for tomorrow morning must know whether the lead got a notice in between. It runs under
the lead's contact lock, after every earlier message of the lead has been claimed (the sender
keeps a lead's messages in order), so two texts can't both believe they are the first.

What is recorded on the message row:
- `notice_decision`: `appended`, `in_text` (the body already tells how to opt out),
  `recent` (a notice went out within 30 days) or `not_required` (a confirmation);
- `notice`: the text appended, when it was; the body becomes body + notice and is sent whole;
- `encoding` and `num_segments` of the body as sent, and `notice_segments`, what the notice
  added: a business sees what the notice costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from compliance.notice import choose, has_opt_out_instruction
from gateway.account_settings import compliance_settings
from gateway.db import among
from gateway.models import Account, Direction, Message, MessageStatus, Purpose
from gateway.playbooks import Issue, Playbook
from gateway.playbooks.report import warning
from gateway.sms import segments

# A message "carried a notice" once the notice (or the body's own instruction) left for Twilio
# and did not come back failed; an undelivered one did not reach the lead, so it doesn't count.
NOTICED = ("appended", "in_text")
REACHED = (
    MessageStatus.SENDING,
    MessageStatus.ACCEPTED,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
)
MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617), and so does the column


@dataclass(frozen=True)
class NoticeOutcome:
    """Column values for the claim, or why the message can't be sent."""

    values: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


def last_notice_query(account_id: Any, phone: Any, since: Any, exclude: Any) -> Any:
    """When the lead last got a text with an opt-out instruction from this account (since
    `since`, `exclude` aside): a scalar subquery of the sender's one read of the lead's texts
    (gateway/sms/sender.py)."""
    return (
        select(func.max(Message.attempt_started_at))
        .where(
            Message.account_id == account_id,
            Message.lead_phone == phone,
            Message.direction == Direction.OUTBOUND,
            among(col(Message.notice_decision), NOTICED),
            among(col(Message.status), REACHED),
            col(Message.attempt_started_at) >= since,
            col(Message.id) != exclude,
        )
        .scalar_subquery()
    )


def for_message(
    account: Account, message: Message, moment: datetime, last: datetime | None
) -> NoticeOutcome:
    """Decide the notice for a message about to be claimed (under the contact lock), `last`
    being what `last_notice_query` found as of `moment - NOTICE_INTERVAL`."""
    if message.notice_decision is not None:
        # Decided on an earlier attempt (a retried send): the body already is what it is.
        return NoticeOutcome()
    notice = compliance_settings(account).opt_out_notice
    choice = choose(
        message.body,
        notice,
        last_notice_at=last,
        at=moment,
        # STOP/HELP confirmations have their own wording (an opt-out confirmation must not
        # tell an opted-out lead to reply STOP).
        required=message.purpose != Purpose.CONFIRMATION,
    )
    if len(choice.body) > MAX_BODY:
        return NoticeOutcome(
            failure=f"the body with the opt-out notice exceeds {MAX_BODY} characters"
        )
    cost = segments.count(choice.body)
    return NoticeOutcome(
        {
            "body": choice.body,
            "notice": choice.notice,
            "notice_decision": choice.reason,
            "encoding": cost.encoding,
            "num_segments": cost.count,
            "notice_segments": segments.added_by(message.body, choice.notice or ""),
        }
    )


def segment_warnings(playbook: Playbook | None, account: Account) -> list[Issue]:
    """Warnings for first texts that the account's notice pushes into another segment.

    The text is measured as written (template variables unfilled): the first text is the one
    that always carries the notice, so a business sees the cost before it publishes.
    """
    if playbook is None:
        return []
    notice = compliance_settings(account).opt_out_notice
    issues: list[Issue] = []
    for step in playbook.first_send_steps():
        text = step.text or ""
        if has_opt_out_instruction(text) or segments.added_by(text, notice) == 0:
            continue
        index = next(i for i, s in enumerate(playbook.steps) if s is step)
        before, after = segments.count(text), segments.count(text + notice)
        issues.append(
            warning(
                f"steps[{index}].text",
                f"the opt-out notice {notice.strip()!r} is appended to a lead's first text: "
                f"this one becomes {after.count} {after.encoding} segments instead of "
                f"{before.count} ({after.units} characters)",
                "notice_adds_segment",
            )
        )
    return issues
