"""The ASGI app: `uvicorn app.main:app`. Assembly only; the parts live in app.api and app.core."""

from __future__ import annotations

import gc

# Importing FastAPI, pydantic and the app builds a few hundred thousand objects that live as long
# as the process; the collector's full passes over them during start-up find no garbage and cost
# a cold start ~15 ms. Paused until the app is built, then what start-up made is frozen (below),
# so later collections, in the middle of requests, skip it too.
gc.disable()

# The collector starts a young collection when allocations outnumber deallocations by this many.
# Each open stream holds its objects for seconds, so at Python's default (700) a new request tips
# it every few tens of milliseconds: the pass finds no garbage (reference counting frees a
# request's objects when it ends) yet walks every open stream's objects, and its older passes
# stall the event loop for 10-200 ms, which every first token waiting behind them pays
# (docs/benchmarks.md, first-token p99). Cyclic garbage is never freed by counting, so it still
# triggers a collection, after this many objects: a few MB at most.
YOUNG_COLLECTION_THRESHOLD = 50_000

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import BaseRoute

from app.api.errors import install_error_handlers
from app.api.guard import ClientGuard, document_guard
from app.api.middleware import RequestContext
from app.api.routes import budget, chat, health
from app.core.budget import build_budget
{%- if cookiecutter.client_auth == "api-key" %}
from app.core.client_keys import ClientKeys
{%- endif %}
from app.core.config import SERVICE_NAME, get_settings
from app.core.logging import configure_logging
from app.core.openai_client import Upstream
from app.core.rate_limit import build_rate_limiter
from app.core.shared_store import SharedStore

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    configure_logging(settings.log_level, settings.trace_project, settings.access_log)
    if not settings.docs_enabled:
        app.router.routes[:] = [r for r in app.router.routes if not is_docs(app, r)]
    upstream = Upstream(settings)
    app.state.settings = settings
    app.state.upstream = upstream
    # REDIS_URL: one limit and one budget for all instances (redis is only imported then).
    store = SharedStore(settings) if settings.redis_url is not None else None
    app.state.shared_store = store
    app.state.rate_limiter = build_rate_limiter(settings, store)
    app.state.budget = build_budget(settings, store)
    # Load in the background: /health answers at once, /ready once everything is loaded.
    loading = [asyncio.create_task(upstream.start())]
    if store is not None:  # say now whether Redis answers
        store.start()
{%- if cookiecutter.client_auth == "api-key" %}
    app.state.client_keys = ClientKeys(settings)
    loading.append(asyncio.create_task(app.state.client_keys.refresh()))
{%- endif %}
    try:
        yield
    finally:
        for task in loading:
            task.cancel()
        await upstream.close()
        if store is not None:
            await store.close()
        logger.info("shut down")


def is_docs(app: FastAPI, route: BaseRoute) -> bool:
    """/openapi.json, /docs and /redoc (and the docs' OAuth redirect): DOCS_ENABLED=1 only."""
    docs = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    return getattr(route, "path", None) in docs


def create_app() -> FastAPI:
    """Build the app without reading the environment: settings are read when the lifespan starts.

    Logging is JSON from uvicorn's first line on; the lifespan then applies LOG_LEVEL etc.
    Every path under /v1 passes ClientGuard (app/api/guard.py), whichever router serves it.
    """
    configure_logging()
    app = FastAPI(title=SERVICE_NAME, lifespan=lifespan)
    install_error_handlers(app)
    health.add_probes(app)
    app.include_router(chat.router)
    app.include_router(budget.router)
    document_guard(app)
    # The last added runs first: the trace and the body cap, then the guard.
    app.add_middleware(ClientGuard)
    app.add_middleware(RequestContext)
    return app


app = create_app()
gc.freeze()
gc.set_threshold(YOUNG_COLLECTION_THRESHOLD)  # the older generations keep theirs
gc.enable()
