"""Reference `minimal-proxy`: one shared AsyncOpenAI client, one chat route, nothing else.

The client reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment, like the service.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from openai import AsyncOpenAI
from pydantic import BaseModel


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncOpenAI() as client:
        app.state.client = client
        app.state.model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        yield


app = FastAPI(lifespan=lifespan)


class Chat(BaseModel):
    message: str


@app.post("/v1/chat")
async def chat(body: Chat, request: Request) -> dict[str, str]:
    state = request.app.state
    completion = await state.client.chat.completions.create(
        model=state.model, messages=[{"role": "user", "content": body.message}]
    )
    return {"reply": completion.choices[0].message.content or "", "model": completion.model}
