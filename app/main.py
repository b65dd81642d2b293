"""The API application: routers and the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from taas.app.auth.router import router as keys_router
from taas.app.core import models  # noqa: F401  (registers every table on Base.metadata)
from taas.app.core.body_size import BodySizeLimit
from taas.app.core.config import get_settings
from taas.app.core.db import DATABASE_UNAVAILABLE, describe_database_error, open_session
from taas.app.core.errors import DomainError
from taas.app.core.openapi import complete_openapi, methods_of_path
from taas.app.core.rate_limits import KeyRateLimiter, RateLimitHeaders
from taas.app.core.storage_space import STORAGE_FULL_LOG, storage_full_reason
from taas.app.dashboard.router import router as dashboard_router
from taas.app.datasets.direct_uploads import router as dataset_uploads_router
from taas.app.datasets.router import router as datasets_router
from taas.app.internal.direct_uploads import router as direct_uploads_router
from taas.app.internal.router import router as internal_router
from taas.app.jobs.router import router as jobs_router
from taas.app.observability.health import router as health_router
from taas.app.observability.http_metrics import HttpMetrics
from taas.app.observability.metrics_scrape import router as metrics_router
from taas.app.observability.request_context import current
from taas.app.observability.request_id import REQUEST_ID_HEADER, RequestId, bind_path_ids
from taas.app.scheduling.reconciler import Reconciler
from taas.app.scheduling.router import router as presence_router
from taas.app.spec import LimitViolation
from taas.app.spec.limits import maxima_beside
from taas.app.spec.suggestions import did_you_mean, spec_hint
from taas.app.stream.hub import StreamHub
from taas.app.stream.router import router as stream_router
from taas.app.sweeps.router import router as sweeps_router
from taas.app.sweeps.schemas import SweepIn
from taas.app.webhooks.router import router as webhooks_router
from taas.app.webhooks.sender import WebhookSender

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


def _domain_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DomainError)
    retry_after = getattr(error, "retry_after_seconds", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=headers)


def _limit_violation(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, LimitViolation)
    return JSONResponse({"detail": error.errors}, status_code=422)


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    # FastAPI's default echoes the offending input back; a huge or secret body should not be.
    assert isinstance(error, RequestValidationError)
    detail: list[dict[str, Any]] = [
        {
            "loc": list(item.get("loc", ())),
            "msg": str(item.get("msg", "")),
            "type": item.get("type"),
        }
        for item in error.errors()
    ]
    for item in detail:
        item["msg"] += _spec_hint(request, error.body, item)
    detail.extend(_maxima_beside(request, error.body, detail))
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type) and any(_is_raw_body_error(item) for item in detail):
        message = f"Content-Type {content_type[:100]!r} is not supported: send application/json"
        return JSONResponse({"detail": message}, status_code=415)
    return JSONResponse({"detail": detail}, status_code=422)


def _spec_hint(request: Request, body: Any, item: dict[str, Any]) -> str:
    """A did-you-mean for an error in a job spec, the body of POST /v1/jobs or the ``spec`` of
    POST /v1/sweeps, so every client gets it (curl, Python, the CLI)."""
    if request.method != "POST":
        return ""
    loc = item["loc"]
    if request.url.path == "/v1/jobs":
        return spec_hint(item, body)
    if request.url.path == "/v1/sweeps" and loc[:2] == ["body", "spec"] and isinstance(body, dict):
        return spec_hint({**item, "loc": ["body", *loc[2:]]}, body.get("spec"))
    if request.url.path == "/v1/sweeps" and len(loc) == 2 and item["type"] == "extra_forbidden":
        return did_you_mean(str(loc[1]), list(SweepIn.model_fields))  # "paramters"
    return ""


def _maxima_beside(request: Request, body: Any, detail: list[dict[str, Any]]) -> list[Any]:
    """The configured maxima a spec that failed validation also exceeds: the server checks them
    once a spec parses, and a person fixing a form should hear of every bad field at once."""
    if request.method != "POST" or not isinstance(body, dict):
        return []
    limits = get_settings().limits
    if request.url.path == "/v1/jobs":
        return maxima_beside(body, limits, ["body"], detail)
    if request.url.path == "/v1/sweeps" and isinstance(body.get("spec"), dict):
        return maxima_beside(body["spec"], limits, ["body", "spec"], detail)
    return []


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _is_raw_body_error(item: dict[str, Any]) -> bool:
    # FastAPI hands a body it did not parse as JSON (wrong or missing Content-Type) to the model
    # as raw bytes, and the model then only says "Input should be a valid dictionary".
    return bool(item["loc"] == ["body"] and item["type"] == "model_attributes_type")


async def _http_error(request: Request, error: Exception) -> Response:
    """FastAPI's answer, except that a 405's Allow lists every method of the path: Starlette
    names only those of the first route that matched it (GET of GET and DELETE /v1/jobs/{id})."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 405:
        methods = methods_of_path(request.app.openapi(), request.url.path)
        if methods:  # else a path the document leaves out (the dashboard's): Starlette's is right
            error.headers = {**(error.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, error)


def _client_disconnected(request: Request, _error: Exception) -> Response:
    # The client went away mid-request (an upload cut off): nothing to answer, nothing broken.
    logger.info("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=499)


def _storage_error(request: Request, error: Exception) -> JSONResponse:
    """A write that ran out of disk space is 507, never a 500 (its partial file is already
    gone: every writer removes its temporary file on the way out); anything else is a 500."""
    reason = storage_full_reason(error)
    if reason is None:
        return _unexpected_error(request, error)
    STORAGE_FULL_LOG.note(reason)
    logger.error("%s %s: %s", request.method, request.url.path, reason)
    detail = f"{reason}; the write was not kept. Free some space and retry"
    return JSONResponse({"detail": detail}, status_code=507)


def _database_unavailable(request: Request, error: Exception) -> JSONResponse:
    # A database restart is not the client's fault nor a bug: say so, and when to try again.
    # Workers retry 5xx answers; Retry-After tells other clients when. (SQLite's "disk is full"
    # is raised as one of these too, and is a 507.)
    if storage_full_reason(error) is not None:
        return _storage_error(request, error)
    logger.warning(
        "database unavailable during %s %s: %s",
        request.method,
        request.url.path,
        describe_database_error(error),
    )
    detail = "the database is unavailable (restarting, unreachable or busy); retry in a few seconds"
    return JSONResponse(
        {"detail": detail}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


def _unexpected_error(_request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=error)
    # Starlette answers this outside the middleware that adds the header to other answers.
    context = current()
    headers = {REQUEST_ID_HEADER: context.request_id} if context and context.request_id else None
    return JSONResponse(
        {"detail": "internal error; it has been logged"}, status_code=500, headers=headers
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Each API process reconciles the database with the broker and the workers while it runs,
    reads new stream events for the streams its clients have open, and sends due webhooks."""
    settings = get_settings()
    reconciler = Reconciler(settings)
    reconciler.start()
    sender = WebhookSender(settings) if settings.webhook_sender else None
    if sender is not None:
        sender.start()
    app.state.stream_hub = StreamHub(open_session)
    try:
        yield
    finally:
        await app.state.stream_hub.close()
        if sender is not None:
            sender.stop()
        reconciler.stop()


def create_app() -> FastAPI:
    settings = get_settings()
    settings.check_production_safety()
    app = FastAPI(
        title="taas",
        version="1",
        description="Training as a service: submit a training job, watch it, download the model.",
        lifespan=_lifespan,
        # Served by the dashboard router from vendored files: the defaults load them from a CDN.
        docs_url=None,
        redoc_url=None,
        # A route about a job names it (and its attempt) in the request's log lines.
        dependencies=[Depends(bind_path_ids)],
    )
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(jobs_router)
    app.include_router(stream_router)
    app.include_router(sweeps_router)
    app.include_router(webhooks_router)
    app.include_router(dataset_uploads_router)
    app.include_router(datasets_router)
    app.include_router(keys_router)
    app.include_router(internal_router)
    app.include_router(direct_uploads_router)
    app.include_router(presence_router)
    app.include_router(dashboard_router)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(LimitViolation, _limit_violation)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    # Registered by type (not only under Exception, whose handler re-raises after answering).
    app.add_exception_handler(OSError, _storage_error)
    app.add_exception_handler(SQLAlchemyError, _storage_error)
    # More specific than SQLAlchemyError: a database that cannot be reached is 503.
    for error_class in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error_class, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
    # Adds the error statuses every route shares and the links between operations.
    app.openapi = partial(complete_openapi, app)  # type: ignore[method-assign]
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_json_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    # Per API key: authentication counts each request (app/auth/dependencies.py); routes
    # without a key (health, the dashboard's files, the docs, the workers') are not limited.
    app.state.rate_limiter = KeyRateLimiter.from_settings(settings)
    app.add_middleware(RateLimitHeaders)
    # Outermost (added last): every answer has its request id, and is counted and timed.
    app.add_middleware(RequestId)
    app.add_middleware(HttpMetrics)
    return app
