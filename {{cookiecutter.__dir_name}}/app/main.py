"""The ASGI app: `uvicorn app.main:app`. Assembly only; the parts live in app.api and app.core."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.deps import guard_state
from app.api.errors import install_error_handlers
from app.api.middleware import RequestContext
from app.api.routes import budget, chat, health
from app.core.config import SERVICE_NAME, get_settings
from app.core.logging import configure_logging
from app.core.openai_client import Upstream

logger = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    configure_logging(settings.log_level, settings.trace_project, settings.access_log)
    upstream = Upstream(settings)
    app.state.upstream = upstream
    for name, value in guard_state(settings).items():
        setattr(app.state, name, value)
    # Resolve the key in the background: /health answers at once, /ready once it is done.
    starting = asyncio.create_task(upstream.start())
    if app.state.shared_store is not None:  # REDIS_URL: say now whether Redis answers
        app.state.shared_store.start()
    try:
        yield
    finally:
        starting.cancel()
        await upstream.close()
        if app.state.shared_store is not None:
            await app.state.shared_store.close()
        logger.info("shut down")


def create_app() -> FastAPI:
    """Build the app without reading the environment: settings are read when the lifespan starts.

    Logging is JSON from uvicorn's first line on; the lifespan then applies LOG_LEVEL etc.
    """
    configure_logging()
    app = FastAPI(title=SERVICE_NAME, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(chat.router)
    app.include_router(budget.router)
    app.add_middleware(RequestContext)
    return app


app = create_app()
