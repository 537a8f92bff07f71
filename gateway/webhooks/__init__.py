"""Outbound activity webhooks: subscriptions, the payload, signing, the delivery outbox and its
job, retries, the circuit breaker, replay and the test tool.

Flow: `record_activity` (and the opt-out ledger) call `gateway.activity_webhooks.record` in
the activity's transaction, whose commit writes one `WebhookDelivery` per matching subscription
(with its payload, `gateway.webhook_payloads`, and its expiry, `gateway.webhook_policy`: all
three below the channels) and stages its `webhooks.deliver` job, which goes to Redis once the
transaction commits (`gateway.work`; the sweep re-finds it if that enqueue is lost). The
database says what is owed; Redis only carries jobs.
"""
