# Reference `seed-image`: the seed's single-stage layout, built from the baked project's folder
# with the same requirements.txt and app/ as the generated Dockerfile.
# The same base as the service's Dockerfile (the bench passes the same PYTHON_IMAGE).
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE}
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY app ./app
CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port \"${PORT:-8080}\""]
