"""Who is calling, for the log lines written while their request is served."""

from __future__ import annotations

from contextvars import ContextVar

# The client id the guard settled on ("key:…", "user:…", "ip:…"); None outside /v1.
current_client: ContextVar[str | None] = ContextVar("current_client", default=None)
