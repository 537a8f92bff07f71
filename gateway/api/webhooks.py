"""`/v1/webhooks` (subscriptions, their deliveries, replay, the test tool) and
`/v1/deliveries/{id}/replay`. How deliveries work: the README's "Receiving webhooks"."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.accounts import lock_account
from gateway.clock import now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.ids import new_id
from gateway.models import Account, WebhookDelivery, WebhookSubscription
from gateway.playbook_versions import latest_version, load
from gateway.state import app_state, current_account
from gateway.webhooks import sending, signing
from gateway.webhooks.addresses import AddressRefused, allows_private, check_url
from gateway.webhooks.delivery import cancel_owed
from gateway.webhooks.labels import available_labels, kind_of, playbook_exists
from gateway.webhooks.payloads import sample_payload
from gateway.webhooks.replay import replay_range, requeue
from gateway.webhooks.shapes import (
    ActivityFilter,
    DeliveryList,
    DeliveryPublic,
    DeliveryQuery,
    ReplayQuery,
    ReplayResult,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookPublic,
    WebhookTestQuery,
    WebhookTestResult,
    WebhookUpdate,
    public_delivery,
    public_webhook,
)
from gateway.work import WEBHOOK_DELIVER, stage

from .openapi import operation
from .requests import read_json, read_query

TAGS = ["webhooks"]
MAX_LABELS_SHOWN = 30
# Every activity writes a delivery for each of its account's subscriptions that wants it, in
# the transaction that records it (a lead's POST among them): the count is bounded, so one
# account can't make each of its activities a thousand-row write.
MAX_WEBHOOKS = 25


async def find_webhook(
    session: AsyncSession, account_id: str, webhook_id: str
) -> WebhookSubscription:
    """The account's subscription, or 404."""
    found = (
        await session.exec(
            select(WebhookSubscription).where(
                WebhookSubscription.id == webhook_id, WebhookSubscription.account_id == account_id
            )
        )
    ).first()
    if found is None:
        raise ApiError(404, "not_found", "no such webhook")
    return found


async def _check_url(request: Request, session: AsyncSession, account: Account, url: str) -> None:
    settings = app_state(request)["settings"]
    try:
        await check_url(
            url,
            https_required=settings.environment != "development",
            allow_private=await allows_private(session, account.id),
        )
    except AddressRefused as exc:
        raise ApiError(422, "url_refused", f"url: {exc}", "url") from None


async def _check_filter(
    session: AsyncSession, account_id: str, activities: ActivityFilter, playbook_id: str | None
) -> list[str] | None:
    """The labels to store (None: all), refusing a playbook or label the account can't have."""
    if playbook_id is not None and not await playbook_exists(session, account_id, playbook_id):
        raise ApiError(422, "invalid", "playbook_id: no such playbook", "playbook_id")
    if activities == "all":
        return None
    known = await available_labels(session, account_id, playbook_id)
    for index, label in enumerate(activities):
        if label not in known:
            shown = ", ".join(sorted(known)[:MAX_LABELS_SHOWN])
            where = f"playbook {playbook_id}" if playbook_id else "the account's playbooks"
            raise ApiError(
                422,
                "unknown_label",
                f"activities[{index}]: {where} can't record {label!r}; known: {shown}",
                f"activities[{index}]",
            )
    return list(dict.fromkeys(activities))


@operation(
    "Subscribe a URL to activities",
    tags=TAGS,
    description="The response carries the signing `secret`, shown this once.",
    request=WebhookCreate,
    example={
        "url": "https://crm.example.com/hooks/partyline",
        "activities": ["replied", "opted_out"],
    },
    response=WebhookCreated,
    status=201,
    errors={409: f"the account has {MAX_WEBHOOKS} webhooks already"},
)
async def create_webhook(request: Request) -> JSONResponse:
    body = await read_json(request, WebhookCreate)
    account = current_account(request)
    async with transaction(app_state(request)["sessions"]) as session:
        await lock_account(session, account.id)  # the count below holds under a race
        count = (
            await session.exec(
                select(func.count()).where(WebhookSubscription.account_id == account.id)
            )
        ).one()
        if count >= MAX_WEBHOOKS:
            raise ApiError(
                409,
                "limit_reached",
                f"an account has at most {MAX_WEBHOOKS} webhooks; delete one first",
            )
        await _check_url(request, session, account, body.url)
        labels = await _check_filter(session, account.id, body.activities, body.playbook_id)
        subscription = WebhookSubscription(
            id=new_id("whk"),
            account_id=account.id,
            url=body.url,
            labels=labels,
            playbook_id=body.playbook_id,
            description=body.description,
            enabled=body.enabled,
            secret=signing.new_secret(),
        )
        session.add(subscription)
    public = public_webhook(subscription, secret=True)
    return JSONResponse(public.model_dump(mode="json"), status_code=201)


@operation("List webhooks", tags=TAGS, response=WebhookList)
async def list_webhooks(request: Request) -> JSONResponse:
    query = select(WebhookSubscription).where(
        WebhookSubscription.account_id == current_account(request).id
    )
    async with app_state(request)["sessions"]() as session:
        rows = (
            await session.exec(
                query.order_by(col(WebhookSubscription.created_at), col(WebhookSubscription.id))
            )
        ).all()
    listed = WebhookList(data=[public_webhook(row) for row in rows])
    return JSONResponse(listed.model_dump(mode="json"))


@operation("Get a webhook", tags=TAGS, response=WebhookPublic)
async def get_webhook(request: Request) -> JSONResponse:
    async with app_state(request)["sessions"]() as session:
        found = await find_webhook(
            session, current_account(request).id, request.path_params["webhook_id"]
        )
    return JSONResponse(public_webhook(found).model_dump(mode="json"))


@operation(
    "Change a webhook",
    tags=TAGS,
    description="Only the fields given change. `enabled: false` cancels what is owed; "
    "`enabled: true` re-enables a subscription disabled by a 410 and closes its breaker.",
    request=WebhookUpdate,
    example={"enabled": False},
    response=WebhookPublic,
)
async def update_webhook(request: Request) -> JSONResponse:
    body = await read_json(request, WebhookUpdate)
    given = body.model_fields_set
    for name in ("url", "activities", "enabled"):
        if name in given and getattr(body, name) is None:
            raise ApiError(422, "invalid", f"{name}: may not be null", name)
    account = current_account(request)
    moment = now()
    async with transaction(app_state(request)["sessions"]) as session:
        found = await find_webhook(session, account.id, request.path_params["webhook_id"])
        if body.url is not None:
            await _check_url(request, session, account, body.url)
            found.url = body.url
        if "activities" in given or "playbook_id" in given:
            activities: ActivityFilter = (
                body.activities
                if body.activities is not None
                else ("all" if found.labels is None else found.labels)
            )
            playbook_id = body.playbook_id if "playbook_id" in given else found.playbook_id
            found.labels = await _check_filter(session, account.id, activities, playbook_id)
            found.playbook_id = playbook_id
        if "description" in given:
            found.description = body.description
        if body.enabled is False and found.enabled:
            found.enabled = False
            await cancel_owed(session, found, moment, "subscription disabled by the account")
        elif body.enabled and not found.enabled:
            found.enabled, found.disabled_reason = True, None
            found.consecutive_failures = 0
            found.breaker_opened_at = found.breaker_probe_at = None
        found.updated_at = moment
        session.add(found)
    return JSONResponse(public_webhook(found).model_dump(mode="json"))


@operation("Delete a webhook and its delivery history", tags=TAGS, status=204)
async def delete_webhook(request: Request) -> Response:
    account_id = current_account(request).id
    async with transaction(app_state(request)["sessions"]) as session:
        found = await find_webhook(session, account_id, request.path_params["webhook_id"])
        await session.exec(
            delete(WebhookDelivery).where(
                col(WebhookDelivery.account_id) == account_id,
                col(WebhookDelivery.subscription_id) == found.id,
            )
        )
        await session.delete(found)
    return Response(status_code=204)


@operation(
    "Rotate a webhook's signing secret",
    tags=TAGS,
    description="The new secret is in the response, shown this once. For 24 hours the old "
    "one still signs too (each request carries both `v1=` signatures).",
    response=WebhookCreated,
)
async def rotate_secret(request: Request) -> JSONResponse:
    async with transaction(app_state(request)["sessions"]) as session:
        found = await find_webhook(
            session, current_account(request).id, request.path_params["webhook_id"]
        )
        moment = now()
        found.previous_secret, found.secret = found.secret, signing.new_secret()
        found.previous_secret_expires_at = moment + signing.ROTATION_OVERLAP
        found.updated_at = moment
        session.add(found)
    return JSONResponse(public_webhook(found, secret=True).model_dump(mode="json"))


@operation(
    "A webhook's deliveries, newest first",
    tags=TAGS,
    description="Status, attempts, last response code and body excerpt, next attempt.",
    query=DeliveryQuery,
    response=DeliveryList,
    errors={422: "a query parameter is invalid, or `before` names no delivery of this webhook"},
)
async def list_deliveries(request: Request) -> JSONResponse:
    query = read_query(request, DeliveryQuery)
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        found = await find_webhook(session, account_id, request.path_params["webhook_id"])
        statement = select(WebhookDelivery).where(
            WebhookDelivery.account_id == account_id, WebhookDelivery.subscription_id == found.id
        )
        if query.status is not None:
            statement = statement.where(WebhookDelivery.status == query.status)
        if query.before is not None:
            cursor = (
                await session.exec(
                    select(WebhookDelivery.activity_id).where(
                        WebhookDelivery.account_id == account_id,
                        WebhookDelivery.subscription_id == found.id,
                        WebhookDelivery.id == query.before,
                    )
                )
            ).first()
            if cursor is None:
                raise ApiError(422, "invalid", "before: no such delivery of this webhook", "before")
            statement = statement.where(col(WebhookDelivery.activity_id) < cursor)
        rows = (
            await session.exec(
                statement.order_by(col(WebhookDelivery.activity_id).desc()).limit(query.limit)
            )
        ).all()
    listed = DeliveryList(
        data=[public_delivery(row) for row in rows],
        next_before=rows[-1].id if len(rows) == query.limit else None,
    )
    return JSONResponse(listed.model_dump(mode="json"))


@operation(
    "Send one delivery again",
    tags=TAGS,
    description="Queues the stored payload again (same event id) with a fresh retry schedule.",
    response=DeliveryPublic,
    status=202,
    errors={409: "the delivery's webhook is disabled"},
)
async def replay_delivery(request: Request) -> JSONResponse:
    account_id = current_account(request).id
    async with transaction(app_state(request)["sessions"]) as session:
        delivery = (
            await session.exec(
                select(WebhookDelivery).where(
                    WebhookDelivery.id == request.path_params["delivery_id"],
                    WebhookDelivery.account_id == account_id,
                )
            )
        ).first()
        if delivery is None:
            raise ApiError(404, "not_found", "no such delivery")
        subscription = await find_webhook(session, account_id, delivery.subscription_id)
        if not subscription.enabled:
            raise ApiError(409, "disabled", "the webhook is disabled: enable it first")
        requeue(delivery, now())
        session.add(delivery)
        stage(session, WEBHOOK_DELIVER, delivery.subscription_id)
    return JSONResponse(public_delivery(delivery).model_dump(mode="json"), status_code=202)


@operation(
    "Send a time range again",
    tags=TAGS,
    description="Every activity in [since, until) the webhook wants is queued again with its "
    "original event id, including ones it never had a delivery for (it was disabled).",
    query=ReplayQuery,
    response=ReplayResult,
    status=202,
    errors={409: "the webhook is disabled"},
)
async def replay_webhook(request: Request) -> JSONResponse:
    query = read_query(request, ReplayQuery)
    if query.until is not None and query.until <= query.since:
        raise ApiError(422, "invalid", "until: must be after since", "until")
    if query.since > now() + timedelta(minutes=1):
        raise ApiError(422, "invalid", "since: must not be in the future", "since")
    account_id = current_account(request).id
    async with transaction(app_state(request)["sessions"]) as session:
        found = await find_webhook(session, account_id, request.path_params["webhook_id"])
        if not found.enabled:
            raise ApiError(409, "disabled", "the webhook is disabled: enable it first")
        queued = await replay_range(session, found, query.since, query.until)
        stage(session, WEBHOOK_DELIVER, found.id)
    return JSONResponse({"replayed": len(queued)}, status_code=202)


@operation(
    "Send a sample activity now and see what the endpoint answers",
    tags=TAGS,
    description="Dummy data (a fake lead, the real field names) for one of the playbook's "
    "activities, signed and sent like a delivery. Nothing is stored; the event id starts "
    "`evt_test_`.",
    query=WebhookTestQuery,
    response=WebhookTestResult,
)
async def test_webhook(request: Request) -> JSONResponse:
    query = read_query(request, WebhookTestQuery)
    account_id = current_account(request).id
    settings = app_state(request)["settings"]
    async with app_state(request)["sessions"]() as session:
        found = await find_webhook(session, account_id, request.path_params["webhook_id"])
        playbook_id = query.playbook_id or found.playbook_id
        if playbook_id is not None and not await playbook_exists(session, account_id, playbook_id):
            raise ApiError(422, "invalid", "playbook_id: no such playbook", "playbook_id")
        known = await available_labels(session, account_id, playbook_id)
        label = query.activity or (found.labels[0] if found.labels else "qualified")
        if label not in known:
            raise ApiError(
                422, "unknown_label", f"activity: the playbook can't record {label!r}", "activity"
            )
        info_keys: list[str] = []
        if playbook_id is not None:
            version = await latest_version(session, account_id, playbook_id)
            if version is not None:
                info_keys = list(
                    (await load(session, account_id, playbook_id, version)).expects_additional_info
                )
        allow_private = await allows_private(session, account_id)
    payload = sample_payload(account_id, label, kind_of(known, label), info_keys)
    async with sending.new_client() as clients:
        outcome = await sending.post(
            clients,
            found.url,
            payload,
            signing_secrets=signing.valid_secrets(found, now()),
            delivery_id=new_id("dlv_test"),
            https_required=settings.environment != "development",
            allow_private=allow_private,
        )
    return JSONResponse(
        {
            "delivered": outcome.delivered,
            "status_code": outcome.status_code,
            "response": outcome.excerpt,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
            "payload": payload,
        }
    )


routes = [
    Route("/v1/webhooks", list_webhooks, methods=["GET"]),
    Route("/v1/webhooks", create_webhook, methods=["POST"]),
    Route("/v1/webhooks/{webhook_id}", get_webhook, methods=["GET"]),
    Route("/v1/webhooks/{webhook_id}", update_webhook, methods=["PATCH"]),
    Route("/v1/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
    Route("/v1/webhooks/{webhook_id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v1/webhooks/{webhook_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/webhooks/{webhook_id}/replay", replay_webhook, methods=["POST"]),
    Route("/v1/webhooks/{webhook_id}/test", test_webhook, methods=["POST"]),
    Route("/v1/deliveries/{delivery_id}/replay", replay_delivery, methods=["POST"]),
]
