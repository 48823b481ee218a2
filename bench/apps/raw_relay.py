"""Reference `raw-relay`: the floor for this stack. One shared httpx client streams the upstream's
SSE, and each `data:` line is decoded with json.loads: no SDK, no objects per chunk.

Same environment and API choice (BENCH_OPENAI_API) as minimal_proxy.py; it always streams.
"""

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from reference_chat import Chat, configure


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    headers = {"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"}
    # The openai client's pool size, so both references hold as many streams.
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        app.state.client = client
        app.state.base = os.environ["OPENAI_BASE_URL"].rstrip("/")
        configure(app.state)
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/v1/chat")
async def chat(body: Chat, request: Request) -> StreamingResponse:
    state = request.app.state
    if state.responses:
        url, payload = "/responses", {"model": state.model, "input": body.message}
    else:
        messages = [{"role": "user", "content": body.message}]
        url, payload = "/chat/completions", {"model": state.model, "messages": messages}
    upstream = state.client.stream("POST", state.base + url, json={**payload, "stream": True})
    return StreamingResponse(relay(upstream, state.responses), media_type="text/event-stream")


async def relay(upstream: object, responses: bool) -> AsyncIterator[str]:
    async with upstream as response:  # type: ignore[attr-defined]
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if responses:
                text = data.get("delta") if data["type"] == "response.output_text.delta" else None
            else:
                text = data["choices"][0]["delta"].get("content") if data["choices"] else None
            if text:
                yield f"data: {json.dumps({'delta': text})}\n\n"
    yield "data: [DONE]\n\n"
