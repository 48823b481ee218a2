"""Reference `bare`: the least a FastAPI service can do, served by the same uvicorn."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
