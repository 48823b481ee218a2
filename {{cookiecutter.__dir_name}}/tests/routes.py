"""Every route of an app as concrete requests to send, for the tests that probe them all."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

GUARDED = re.compile(r"/v1(/.*)?")


@dataclass(frozen=True)
class Probe:
    method: str  # an HTTP method, or "WEBSOCKET"
    path: str  # a concrete path: parameters filled in


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[Probe]:
    """One probe per method of every route, descending into included routers (FastAPI keeps
    them as routers, with their prefix) and into mounted applications."""
    for context in iter_route_contexts(routes):
        route, path = context.original_route, prefix + (context.path or "")
        if isinstance(route, Mount):
            yield Probe("GET", path + "/")  # the mount itself, routed or not
            yield from walk(route.routes, path)
        elif isinstance(route, WebSocketRoute):
            yield Probe("WEBSOCKET", concrete(path))
        elif isinstance(route, Route):  # FastAPI's APIRoute too
            for method in sorted(context.methods or {"GET"}):
                yield Probe(method, concrete(path))


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)
