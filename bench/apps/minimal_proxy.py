"""Reference `minimal-proxy`: one shared AsyncOpenAI client, one chat route, nothing else.

The client reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment, like the service;
BENCH_OPENAI_API picks the API the service variant under test speaks (`responses`, the default,
or `chat-completions`). With `"stream": true` the route relays the SDK's stream as SSE.
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from openai import AsyncOpenAI
from reference_chat import Chat, configure


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncOpenAI() as client:
        app.state.client = client
        configure(app.state)
        yield


app = FastAPI(lifespan=lifespan)


@app.post("/v1/chat")
async def chat(body: Chat, request: Request) -> object:
    state = request.app.state
    if state.responses:
        response = await state.client.responses.create(
            model=state.model, input=body.message, stream=body.stream
        )
        if body.stream:
            return StreamingResponse(responses_events(response), media_type="text/event-stream")
        return {"reply": response.output_text, "model": response.model}
    messages = [{"role": "user", "content": body.message}]
    completion = await state.client.chat.completions.create(
        model=state.model, messages=messages, stream=body.stream
    )
    if body.stream:
        return StreamingResponse(chat_events(completion), media_type="text/event-stream")
    return {"reply": completion.choices[0].message.content or "", "model": completion.model}


async def chat_events(stream: AsyncIterator) -> AsyncIterator[str]:
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                yield f"data: {json.dumps({'delta': choice.delta.content})}\n\n"
    yield "data: [DONE]\n\n"


async def responses_events(stream: AsyncIterator) -> AsyncIterator[str]:
    async for event in stream:
        if event.type == "response.output_text.delta":
            yield f"data: {json.dumps({'delta': event.delta})}\n\n"
    yield "data: [DONE]\n\n"
