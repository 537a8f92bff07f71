"""Seeding for bench/scale.py: millions of realistic rows in PostgreSQL, generated server-side.

Rows are produced by `INSERT ... SELECT` over `generate_series` (no Python per row), so a
million leads with their plays, messages, activities, deliveries, emails and party lines take
minutes. One temporary table of per-row random draws keeps each lead's rows consistent with
one another (a running play has a recent lead, an answered play has an inbound message).

The spread, per account of N leads (one play each):
- created over 180 days, oldest first; the last 3% (about 5 days) are mostly running plays,
  older plays are finished (has_outcome 60%, stopped 30%, opted_out 9%), but for 1% of
  them in account A, long drips still running (account B runs only short conversations, so
  its running plays are all recent);
- running plays: 60% waiting for a reply; due_at in the future for most, in the past for about
  3% of them (the plays sweep's work), none for the rest; 2% paused;
- three playbooks; `insurance-xdate` only in the last 5% (a playbook introduced lately);
- messages: the first text of every play (mostly delivered), a reply for half of them; 0.5% of
  texts deferred by quiet hours (queued, send_after in the future), a few due now, a few stale
  `sending`, a few inbound texts not yet handed to their plays;
- one `started` activity per play, delivered to the account's webhook (a few pending);
- an email for 10% of plays (a few queued), a party line for 0.5% (a few live, waking later).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Area codes of the seeded leads (all in the mainland US; the soak uses Guam numbers).
AREAS = "ARRAY['415','212','305','713','312','206','617','404','602','303']"

DRAWS = """
CREATE TEMP TABLE seed AS
SELECT i,
       md5(:tag || i::text) AS h,
       i::float8 / :n AS frac,
       random() AS r1, random() AS r2, random() AS r3,
       CAST(:now AS timestamptz) - make_interval(secs => (:n - i) * (180.0 * 86400 / :n))
         - make_interval(secs => random() * 60) AS created
FROM generate_series(1, :n) AS i
"""

PLAN = """
CREATE TEMP TABLE seed_play AS
SELECT s.*,
       CASE WHEN (frac > 0.97 AND r1 < 0.7) OR (frac <= 0.97 AND r1 < :drips) THEN 'running'
            WHEN r1 < 0.61 THEN 'has_outcome'
            WHEN r1 < 0.91 THEN 'stopped'
            ELSE 'opted_out' END AS state
FROM seed s
"""

LEADS = f"""
INSERT INTO leads (id, account_id, phone, first_name, last_name, email, state, postal_code,
                   additional_info, phone_status, created_at, updated_at)
SELECT 'lead_' || h, :account, '+1' || ({AREAS})[1 + i % 10] || (2000000 + i)::text,
       'Lead' || i, 'Scale', 'lead' || i || '@example.com', NULL, NULL,
       '{{"source": "bench"}}', 'ok', created, created
FROM seed
"""

PLAYS = """
INSERT INTO plays (id, account_id, lead_id, playbook_id, playbook_version, state, settings,
                   answers, step_id, due_at, waiting_reply, catch_all_level, reengagements_sent,
                   drip_halted, paused, started, outcome, rep_id, source_rule_id,
                   last_lead_reply_at, created_at, updated_at, ended_at)
SELECT 'play_' || h, :account, 'lead_' || h,
       CASE WHEN state = 'running' AND r3 < 0.03 THEN 'mortgage-qualification'
            WHEN frac > 0.95 AND r2 < 0.4 THEN 'insurance-xdate'
            WHEN r2 < 0.7 THEN 'mortgage-qualification'
            ELSE 'insurance-quote-drip' END,
       1, state, '{"partner_name": "Acme Lending"}', '{}',
       CASE WHEN state = 'running' THEN 'interested' END,
       CASE WHEN state <> 'running' THEN NULL
            WHEN r3 < 0.03 THEN CAST(:now AS timestamptz) - make_interval(secs => r3 * 86400)
            WHEN r3 < 0.85 THEN CAST(:now AS timestamptz) + make_interval(secs => r3 * 172800)
            END,
       state = 'running' AND r3 < 0.6, 0, 0, false,
       state = 'running' AND r3 > 0.98, true,
       CASE WHEN state = 'has_outcome' THEN
            (ARRAY['qualified','unqualified','callback_requested'])[1 + i % 3] END,
       NULL, NULL,
       CASE WHEN r2 < 0.5 THEN created + interval '5 minutes' END,
       created, created + interval '1 hour',
       CASE WHEN state <> 'running' THEN created + interval '1 hour' END
FROM seed_play
"""

OUTBOUND = f"""
INSERT INTO messages (id, account_id, lead_id, lead_phone, play_id, step_id, direction,
                      from_number, to_number, body, media, purpose, reason, status, twilio_sid,
                      send_after, attempts, attempt_started_at, created_at, updated_at, sent_at)
SELECT 'msg_' || md5(h || 'o'), :account, 'lead_' || h,
       '+1' || ({AREAS})[1 + i % 10] || (2000000 + i)::text, 'play_' || h, 'interested',
       'outbound', '+18085550100', '+1' || ({AREAS})[1 + i % 10] || (2000000 + i)::text,
       'Hi, it''s Sam with Acme Lending. Still looking for a mortgage? Reply YES or NO.',
       '[]', 'initiated', 'play_step',
       CASE WHEN i % 200 = 0 THEN 'queued'
            WHEN i % 20000 = 1 THEN 'queued'
            WHEN i % 100000 = 2 THEN 'sending'
            WHEN r3 < 0.03 THEN 'undelivered'
            WHEN r3 < 0.05 THEN 'failed'
            ELSE 'delivered' END,
       CASE WHEN i % 200 = 0 OR i % 20000 = 1 OR i % 100000 = 2 THEN NULL
            ELSE 'SM' || md5(h || 'o') END,
       CASE WHEN i % 200 = 0 THEN CAST(:now AS timestamptz) + interval '9 hours' END,
       CASE WHEN i % 100000 = 2 THEN 1 ELSE 0 END,
       CASE WHEN i % 100000 = 2 THEN created END,
       created, created, CASE WHEN i % 200 <> 0 THEN created END
FROM seed
"""

INBOUND = f"""
INSERT INTO messages (id, account_id, lead_id, lead_phone, play_id, direction, from_number,
                      to_number, body, media, purpose, reason, status, twilio_sid, attempts,
                      dispatched_at, created_at, updated_at)
SELECT 'msg_' || md5(h || 'i'), :account, 'lead_' || h,
       '+1' || ({AREAS})[1 + i % 10] || (2000000 + i)::text, 'play_' || h, 'inbound',
       '+1' || ({AREAS})[1 + i % 10] || (2000000 + i)::text, '+18085550100',
       (ARRAY['yes','no','350k','STOP'])[1 + i % 4], '[]', 'initiated', 'inbound', 'received',
       'SM' || md5(h || 'i'), 0,
       CASE WHEN i % 50000 = 3 THEN NULL ELSE created + interval '5 minutes' END,
       created + interval '5 minutes', created + interval '5 minutes'
FROM seed WHERE r2 < 0.5
"""

SUBSCRIPTION = """
INSERT INTO webhook_subscriptions (id, account_id, url, labels, enabled, secret,
                                   consecutive_failures, created_at, updated_at)
VALUES (:subscription, :account, 'https://crm.example.com/hooks', NULL, true, 'whsec_bench', 0,
        CAST(:now AS timestamptz) - interval '200 days', CAST(:now AS timestamptz))
"""

ACTIVITIES = """
INSERT INTO activities (public_id, account_id, play_id, lead_id, playbook_id, type, label,
                        created_at)
SELECT 'evt_' || h, :account, 'play_' || h, 'lead_' || h, 'mortgage-qualification', 'event',
       'started', created
FROM seed ORDER BY i
"""

DELIVERIES = """
INSERT INTO webhook_deliveries (id, account_id, subscription_id, activity_id, event_id,
                                order_key, label, status, payload, attempts, total_attempts,
                                replays, next_attempt_at, expires_at, last_attempt_at,
                                last_status_code, delivered_at, created_at, updated_at)
SELECT 'dlv_' || s.h, :account, :subscription, a.id, a.public_id, 'play_' || s.h,
       'started', CASE WHEN s.i % 5000 = 0 THEN 'pending' ELSE 'delivered' END,
       json_build_object('id', a.public_id, 'label', 'started'),
       1, 1, 0,
       CASE WHEN s.i % 5000 = 0 THEN CAST(:now AS timestamptz) + interval '1 day' END,
       GREATEST(s.created, CAST(:now AS timestamptz)) + interval '3 days', s.created, 200,
       CASE WHEN s.i % 5000 <> 0 THEN s.created END, s.created, s.created
FROM seed s JOIN activities a ON a.public_id = 'evt_' || s.h
"""

EMAILS = """
INSERT INTO emails (id, account_id, lead_id, play_id, step_id, to_address, subject, body,
                    status, attempts, send_after, created_at, updated_at)
SELECT 'eml_' || h, :account, 'lead_' || h, 'play_' || h, 'quote_email',
       'lead' || i || '@example.com', 'Your quote', 'Here is your quote.',
       CASE WHEN i % 2000 = 0 THEN 'queued' ELSE 'captured' END, 0,
       CASE WHEN i % 2000 = 0 THEN CAST(:now AS timestamptz) + interval '9 hours' END,
       created, created
FROM seed WHERE r3 < 0.1 OR i % 2000 = 0
"""

PARTY_LINES = """
INSERT INTO party_lines (id, account_id, play_id, lead_id, step_id, from_number, phase,
                         end_reason, state, policy, greeting, whisper, outbox, wake_at, version,
                         created_at, updated_at, ended_at)
SELECT 'pl_' || h, :account, 'play_' || h, 'lead_' || h, 'call', '+18085550100',
       CASE WHEN i % 20000 = 5 THEN 'lead_ringing' ELSE 'ended' END,
       CASE WHEN i % 20000 = 5 THEN NULL ELSE 'completed' END,
       '{}', '{}', '', '', '[]',
       CASE WHEN i % 20000 = 5 THEN CAST(:now AS timestamptz) + interval '2 days' END, 3,
       created, created, CASE WHEN i % 20000 <> 5 THEN created + interval '20 minutes' END
FROM seed WHERE i % 200 = 1 OR i % 20000 = 5
"""

STEPS: list[tuple[str, str]] = [
    ("draws", DRAWS),
    ("play states", PLAN),
    ("leads", LEADS),
    ("plays", PLAYS),
    ("outbound messages", OUTBOUND),
    ("inbound messages", INBOUND),
    ("webhook subscription", SUBSCRIPTION),
    ("activities", ACTIVITIES),
    ("webhook deliveries", DELIVERIES),
    ("emails", EMAILS),
    ("party lines", PARTY_LINES),
]


@dataclass
class SeedTimes:
    rows: dict[str, int]
    seconds: float


async def seed_account(
    engine: AsyncEngine,
    account_id: str,
    leads: int,
    moment: datetime,
    tag: str,
    *,
    drips: float,
) -> SeedTimes:
    """Insert `leads` leads (one play each, with their other rows) for one account; `drips`:
    the share of older plays still running (long drips)."""
    started = time.perf_counter()
    params = {
        "account": account_id,
        "n": leads,
        "drips": drips,
        "now": moment,
        "tag": tag,
        "subscription": f"whk_{tag}",
    }
    rows: dict[str, int] = {}
    async with engine.begin() as connection:
        await connection.execute(text("SELECT setseed(0.42)"))
        for name, sql in STEPS:
            step_started = time.perf_counter()
            result = await connection.execute(text(sql), _used(sql, params))
            rows[name] = int(result.rowcount or 0)
            print(
                f"  seeded {name}: {rows[name]} rows in {time.perf_counter() - step_started:.1f} s",
                flush=True,
            )
        await connection.execute(text("DROP TABLE seed_play"))
        await connection.execute(text("DROP TABLE seed"))
    return SeedTimes(rows=rows, seconds=time.perf_counter() - started)


def _used(sql: str, params: dict[str, object]) -> dict[str, object]:
    """Only the bind parameters a statement names (asyncpg refuses unused ones)."""
    return {name: value for name, value in params.items() if f":{name}" in sql}


async def analyze(engine: AsyncEngine) -> None:
    """Fresh planner statistics, as autovacuum would have gathered on a live database."""
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("VACUUM ANALYZE"))
