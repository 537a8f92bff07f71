"""`/v1/playbooks`: publish versions of a playbook, read them, list them, validate a draft.

A publish sends the document in one of two ways:
- `Content-Type: application/yaml` (or `text/yaml`, `application/x-yaml`): the body is the
  YAML document itself;
- `Content-Type: application/json`: the body is either the playbook as a JSON object, or an
  envelope `{"document": "<YAML or JSON text>", "format": "yaml" | "json"}` (`format` optional,
  guessed from the text). A JSON object with a `document` key is always the envelope: a
  playbook has no such field.

Every publish stores version N+1 with the document exactly as sent; older versions never change,
so running plays keep theirs. A `goto` naming a playbook the account hasn't published yet is a
warning, not an error (playbooks that name each other can be published in any order); a play
that reaches such a step before the playbook exists stops there.

A document larger than 256 KiB is refused with 413 before it is parsed; the other limits
(gateway/playbooks/limits.py) come back as 422 issues. Parsing and validation run in a worker
thread, so a large document never holds the event loop (or `/healthz`, or `gateway run`'s worker).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.account_warnings import account_warnings
from gateway.clock import now
from gateway.db import transaction
from gateway.errors import ApiError
from gateway.models import PlaybookRecord, PlaybookVersion, SourceRule
from gateway.playbooks import (
    ActivityKind,
    GotoStep,
    Issue,
    Playbook,
    ValidationReport,
    check_playbook_id,
    load_document,
    validate_playbook,
)
from gateway.playbooks.limits import MAX_DOCUMENT_BYTES, DocumentRefused
from gateway.playbooks.loading import check_size, document_issue
from gateway.playbooks.report import warning
from gateway.sms.notice import segment_warnings
from gateway.state import app_state, current_account

from .openapi import IssuePublic, error_with, operation
from .requests import MAX_BODY, read_json, read_query, validation_error

TAGS = ["playbooks"]
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")
# The document /docs shows for PUT /v1/playbooks/{id} and POST /v1/playbooks/validate.
PLAYBOOK_EXAMPLE = """\
name: Quote follow-up
settings:
  agent_name: Jordan
steps:
  - id: welcome
    kind: send
    text: "Hi {lead.first_name|there}, it's {settings.agent_name}. Your quote is on its way."
"""
PUBLISH_ATTEMPTS = 3


class PlaybookVersionCreate(BaseModel):
    """The envelope form of a JSON body: the document as text (or object) and its format."""

    model_config = ConfigDict(extra="forbid")

    document: str | dict[str, Any] = Field(description="YAML or JSON text, or a JSON object")
    format: Literal["yaml", "json"] | None = Field(
        default=None, description="default: JSON when the text starts with '{', else YAML"
    )


class ValidateQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook_id: str | None = Field(
        default=None, max_length=64, description="validate as if publishing under this id"
    )


class VersionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="default: the latest")


class PlaybookCloneCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    playbook_id: str = Field(max_length=64, description="the new playbook's id")
    version: int | None = Field(
        default=None, ge=1, description="the version to copy; default: the latest"
    )


class ValidationResult(BaseModel):
    valid: bool
    errors: list[IssuePublic]
    warnings: list[IssuePublic]


class PlaybookSummary(BaseModel):
    id: str
    name: str
    latest_version: int
    activity_labels: dict[str, ActivityKind]
    transitions: list[str] = Field(description="playbooks this one can move a lead to (goto)")
    created_at: datetime
    updated_at: datetime


class PlaybookList(BaseModel):
    data: list[PlaybookSummary]


class PlaybookVersionPublic(BaseModel):
    id: str
    name: str
    version: int
    latest_version: int
    format: Literal["yaml", "json"]
    document: str = Field(description="the document exactly as published")
    activity_labels: dict[str, ActivityKind]
    transitions: list[str]
    created_at: datetime


class PlaybookPublished(PlaybookVersionPublic):
    warnings: list[IssuePublic]
    account_warnings: list[IssuePublic] = Field(
        default_factory=list,
        description="what the account lacks for the leads this playbook contacts (help_contact, "
        "postal_address); not about the document, so apart from `warnings`",
    )


def _too_large() -> ApiError:
    return ApiError(
        413,
        "too_large",
        f"the playbook is larger than {MAX_DOCUMENT_BYTES} bytes (limit MAX_DOCUMENT_BYTES); "
        "see the limits in the playbook format",
        "document",
    )


def _issues(issues: list[Issue]) -> list[dict[str, str]]:
    return [{"field": i.path, "code": i.code, "message": i.message} for i in issues]


async def _read_source(request: Request) -> tuple[str, Literal["yaml", "json"]]:
    """The document text and format from a YAML or JSON body (see the module docstring)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body larger than {MAX_BODY} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media in YAML_TYPES and len(body) > MAX_DOCUMENT_BYTES:
        raise _too_large()  # the body is the document: refuse it before decoding anything
    text, format = _decode_source(body, media)
    try:
        check_size(text)
    except DocumentRefused:
        raise _too_large() from None
    return text, format


def _decode_source(body: bytes, media: str) -> tuple[str, Literal["yaml", "json"]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_encoding", "body is not UTF-8") from None
    if media in YAML_TYPES:
        return text, "yaml"
    if media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the playbook as application/yaml or application/json",
        )
    try:
        data: Any = json.loads(text or "null")
    except (ValueError, RecursionError):
        raise ApiError(400, "bad_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "body must be a JSON object")
    if "document" not in data:
        return text, "json"
    try:
        source = PlaybookVersionCreate.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if isinstance(source.document, dict):
        return json.dumps(source.document, indent=2, ensure_ascii=False), "json"
    guessed: Literal["yaml", "json"] = (
        "json" if source.document.lstrip().startswith("{") else "yaml"
    )
    return source.document, source.format or guessed


def _validate(text: str, format: Literal["yaml", "json"]) -> tuple[ValidationReport, Any]:
    """The report and the decoded document (None when it doesn't parse). Runs in a thread."""
    report = ValidationReport()
    try:
        data = load_document(text, format=format)
        # The decoded document is stored as JSON: PostgreSQL refuses NaN and infinities.
        json.dumps(data, allow_nan=False)
    except RecursionError:
        report.add([Issue("", "the document is nested too deeply", "too_deep")])
        return report, None
    except ValueError as exc:
        report.add([document_issue(exc)])
        return report, None
    return validate_playbook(data), data


async def _validate_off_loop(
    text: str, format: Literal["yaml", "json"]
) -> tuple[ValidationReport, Any]:
    # Parsing and validating a document at the limits takes a noticeable fraction of a second
    # of CPU; in a thread, the event loop keeps answering (the GIL is handed over every 5 ms).
    return await asyncio.to_thread(_validate, text, format)


async def _goto_issues(
    session: AsyncSession, account_id: str, playbook: Playbook, own_id: str | None
) -> list[Issue]:
    """Warnings for goto steps naming playbooks the account hasn't published (yet)."""
    targets = set(playbook.transitions()) - {own_id}
    known = set(
        (
            await session.exec(
                select(PlaybookRecord.id).where(
                    PlaybookRecord.account_id == account_id, col(PlaybookRecord.id).in_(targets)
                )
            )
        ).all()
    )
    return [
        warning(
            f"steps[{i}].playbook",
            f"no playbook {step.playbook!r} in this account yet: publish it before a play "
            "reaches this step (a play that gets here first stops)",
            "unknown_playbook",
        )
        for i, step in enumerate(playbook.steps)
        if isinstance(step, GotoStep) and step.playbook in targets - known
    ]


def _version_body(record: PlaybookRecord, version: PlaybookVersion) -> dict[str, Any]:
    playbook = Playbook.model_validate(version.definition)
    return PlaybookVersionPublic(
        id=record.id,
        name=playbook.name,
        version=version.version,
        latest_version=record.latest_version,
        format="json" if version.format == "json" else "yaml",
        document=version.document,
        activity_labels=playbook.activity_labels(),
        transitions=playbook.transitions(),
        created_at=version.created_at,
    ).model_dump(mode="json")


@operation(
    "Publish a new version of a playbook",
    tags=TAGS,
    description="The body is the YAML document (`application/yaml`), the playbook as a JSON "
    'object, or `{"document": "...", "format": "yaml"}` (`application/json`). Errors: 422 '
    "with `error.issues` (every problem, each with its `field` path). Warnings come back with "
    "the published version.",
    request=PlaybookVersionCreate,
    example={"document": PLAYBOOK_EXAMPLE, "format": "yaml"},
    text_example=PLAYBOOK_EXAMPLE,
    request_text=YAML_TYPES,
    response=PlaybookPublished,
    status=201,
    errors={
        413: "the document is larger than 256 KiB",
        415: "the body is neither YAML nor JSON",
        409: "concurrent publishes; retry",
    },
)
async def publish_playbook(request: Request) -> Response:
    playbook_id = request.path_params["playbook_id"]
    try:
        check_playbook_id(playbook_id)
    except PydanticCustomError as exc:
        raise ApiError(422, "invalid", f"playbook_id: {exc.message()}", "playbook_id") from None
    text, format = await _read_source(request)
    report, data = await _validate_off_loop(text, format)
    report.add(segment_warnings(report.playbook, current_account(request)))
    return await _store(request, playbook_id, text=text, format=format, report=report, data=data)


async def _next_version(session: AsyncSession, account_id: str, playbook_id: str) -> int:
    """The number a first publish under this id takes: after any versions a deleted playbook of
    the same id left behind (finished and running plays still name them), else 1."""
    query = select(func.max(PlaybookVersion.version)).where(
        PlaybookVersion.account_id == account_id, PlaybookVersion.playbook_id == playbook_id
    )
    return ((await session.exec(query)).first() or 0) + 1


async def _store(
    request: Request,
    playbook_id: str,
    *,
    text: str,
    format: Literal["yaml", "json"],
    report: ValidationReport,
    data: Any,
    new_only: bool = False,
) -> Response:
    """Publish a validated document as the next version of `playbook_id`: a 422 with every
    issue when it has errors; with `new_only` (a clone), a 409 when the id is taken."""
    account_id = current_account(request).id
    for _ in range(PUBLISH_ATTEMPTS):
        try:
            async with transaction(app_state(request)["sessions"]) as session:
                if report.playbook is not None:
                    report.add(
                        await _goto_issues(session, account_id, report.playbook, playbook_id)
                    )
                if report.errors:
                    first = report.errors[0]
                    return error_with(
                        422,
                        "invalid_playbook",
                        f"{len(report.errors)} problem(s); first: {first}",
                        first.path or None,
                        issues=_issues(report.errors),
                    )
                record = await _find_record(session, account_id, playbook_id)
                if record is not None and new_only:
                    return error_with(
                        409,
                        "conflict",
                        f"playbook {playbook_id!r} already exists",
                        "playbook_id",
                        existing_id=playbook_id,
                    )
                assert report.playbook is not None
                if record is None:
                    number = await _next_version(session, account_id, playbook_id)
                    record = PlaybookRecord(
                        account_id=account_id, id=playbook_id, name="", latest_version=0
                    )
                else:
                    number = record.latest_version + 1
                record.name, record.latest_version = report.playbook.name, number
                record.updated_at = now()
                version = PlaybookVersion(
                    account_id=account_id,
                    playbook_id=playbook_id,
                    version=number,
                    document=text,
                    format=format,
                    definition=data,
                )
                session.add(record)
                session.add(version)
        except IntegrityError:
            continue  # another publish took this version number: take the next one
        body = _version_body(record, version)
        body["warnings"] = _issues(report.warnings)
        body["account_warnings"] = _issues(
            account_warnings(report.playbook, current_account(request))
        )
        return JSONResponse(body, status_code=201)
    raise ApiError(409, "conflict", "the playbook is being published concurrently; retry")


async def _find_record(
    session: AsyncSession, account_id: str, playbook_id: str
) -> PlaybookRecord | None:
    query = select(PlaybookRecord).where(
        PlaybookRecord.account_id == account_id, PlaybookRecord.id == playbook_id
    )
    return (await session.exec(query)).first()


@operation(
    "Validate a playbook without publishing it",
    tags=TAGS,
    description="Same bodies as the publish. Always 200 (unless the body can't be read): "
    "`valid`, `errors` and `warnings`, each issue with its `field` path.",
    request=PlaybookVersionCreate,
    example={"document": PLAYBOOK_EXAMPLE, "format": "yaml"},
    text_example=PLAYBOOK_EXAMPLE,
    request_text=YAML_TYPES,
    query=ValidateQuery,
    response=ValidationResult,
    errors={413: "the document is larger than 256 KiB", 415: "the body is neither YAML nor JSON"},
)
async def validate_playbook_draft(request: Request) -> JSONResponse:
    query = read_query(request, ValidateQuery)
    text, format = await _read_source(request)
    report, _ = await _validate_off_loop(text, format)
    report.add(segment_warnings(report.playbook, current_account(request)))
    if report.playbook is not None:
        async with app_state(request)["sessions"]() as session:
            report.add(
                await _goto_issues(
                    session, current_account(request).id, report.playbook, query.playbook_id
                )
            )
    return JSONResponse(
        {"valid": report.ok, "errors": _issues(report.errors), "warnings": _issues(report.warnings)}
    )


@operation("Get a playbook version", tags=TAGS, query=VersionQuery, response=PlaybookVersionPublic)
async def get_playbook(request: Request) -> JSONResponse:
    query = read_query(request, VersionQuery)
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        record = (
            await session.exec(
                select(PlaybookRecord).where(
                    PlaybookRecord.account_id == account_id,
                    PlaybookRecord.id == request.path_params["playbook_id"],
                )
            )
        ).first()
        if record is None:
            raise ApiError(404, "not_found", "no such playbook")
        version = (
            await session.exec(
                select(PlaybookVersion).where(
                    PlaybookVersion.account_id == account_id,
                    PlaybookVersion.playbook_id == record.id,
                    PlaybookVersion.version == (query.version or record.latest_version),
                )
            )
        ).first()
    if version is None:
        raise ApiError(404, "not_found", "no such version of this playbook", "version")
    return JSONResponse(_version_body(record, version))


@operation("List playbooks, with their activity labels", tags=TAGS, response=PlaybookList)
async def list_playbooks(request: Request) -> JSONResponse:
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        rows = (
            await session.exec(
                select(PlaybookRecord, PlaybookVersion)
                .join(
                    PlaybookVersion,
                    (col(PlaybookVersion.account_id) == col(PlaybookRecord.account_id))
                    & (col(PlaybookVersion.playbook_id) == col(PlaybookRecord.id))
                    & (col(PlaybookVersion.version) == col(PlaybookRecord.latest_version)),
                )
                .where(PlaybookRecord.account_id == account_id)
                .order_by(col(PlaybookRecord.id))
            )
        ).all()
    data = []
    for record, version in rows:
        playbook = Playbook.model_validate(version.definition)
        data.append(
            PlaybookSummary(
                id=record.id,
                name=record.name,
                latest_version=record.latest_version,
                activity_labels=playbook.activity_labels(),
                transitions=playbook.transitions(),
                created_at=record.created_at,
                updated_at=record.updated_at,
            ).model_dump(mode="json")
        )
    return JSONResponse({"data": data})


@operation(
    "Clone a playbook under a new id",
    tags=TAGS,
    description="Publishes a copy of one version's document (default: the latest), exactly as "
    "it was published, as the first version of `playbook_id`, validated like any publish. The "
    "new id must not name a playbook of the account (409 with `existing_id`).",
    request=PlaybookCloneCreate,
    example={"playbook_id": "quote-follow-up-copy"},
    response=PlaybookPublished,
    status=201,
    errors={409: "the new id names a playbook already (`existing_id`)"},
)
async def clone_playbook(request: Request) -> Response:
    body = await read_json(request, PlaybookCloneCreate)
    try:
        check_playbook_id(body.playbook_id)
    except PydanticCustomError as exc:
        raise ApiError(422, "invalid", f"playbook_id: {exc.message()}", "playbook_id") from None
    account_id = current_account(request).id
    async with app_state(request)["sessions"]() as session:
        record = await _find_record(session, account_id, request.path_params["playbook_id"])
        if record is None:
            raise ApiError(404, "not_found", "no such playbook")
        source = await session.get(
            PlaybookVersion, (account_id, record.id, body.version or record.latest_version)
        )
    if source is None:
        raise ApiError(404, "not_found", "no such version of this playbook", "version")
    format: Literal["yaml", "json"] = "json" if source.format == "json" else "yaml"
    # Validated again: the rules may have grown since it was published, and the goto warnings
    # depend on the id it is published under.
    report, data = await _validate_off_loop(source.document, format)
    report.add(segment_warnings(report.playbook, current_account(request)))
    return await _store(
        request,
        body.playbook_id,
        text=source.document,
        format=format,
        report=report,
        data=data,
        new_only=True,
    )


@operation(
    "Delete a playbook",
    tags=TAGS,
    description="The playbook leaves the list and no new play can start on it (a `goto` to it "
    "stops, as for a playbook never published). Its versions are kept: plays already running "
    "finish on theirs, and finished plays still show which version they ran. Publishing the "
    "id again continues the version numbers after the last kept one. Refused (409) while a "
    "source rule starts it: change or delete the rule first.",
    status=204,
    errors={409: "a source rule starts this playbook (`existing_id` is one such rule)"},
)
async def delete_playbook(request: Request) -> Response:
    account_id = current_account(request).id
    async with transaction(app_state(request)["sessions"]) as session:
        record = await _find_record(session, account_id, request.path_params["playbook_id"])
        if record is None:
            raise ApiError(404, "not_found", "no such playbook")
        rules = (
            await session.exec(
                select(SourceRule)
                .where(SourceRule.account_id == account_id, SourceRule.playbook_id == record.id)
                .order_by(col(SourceRule.origin_key))
            )
        ).all()
        if rules:
            named = ", ".join(f"{rule.id} ({rule.origin})" for rule in rules)
            return error_with(
                409,
                "conflict",
                f"source rules start this playbook: {named}; change or delete them first",
                existing_id=rules[0].id,
            )
        await session.delete(record)
    return Response(status_code=204)


routes = [
    Route("/v1/playbooks", list_playbooks, methods=["GET"]),
    Route("/v1/playbooks/validate", validate_playbook_draft, methods=["POST"]),
    Route("/v1/playbooks/{playbook_id}", get_playbook, methods=["GET"]),
    Route("/v1/playbooks/{playbook_id}", publish_playbook, methods=["PUT"]),
    Route("/v1/playbooks/{playbook_id}", delete_playbook, methods=["DELETE"]),
    Route("/v1/playbooks/{playbook_id}/clone", clone_playbook, methods=["POST"]),
]
