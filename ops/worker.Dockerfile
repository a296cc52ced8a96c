# syntax=docker/dockerfile:1
# The GPU worker image: what every pod runs (see worker/README-section.md).
# Build from the repository root (the root .dockerignore keeps the context small):
#   docker build -f ops/worker.Dockerfile -t ghcr.io/<you>/gpu-worker:0.1.0 .
# The worker itself needs no CUDA; the CUDA runtime base is for the GPU programs that
# derived images add (FROM this image, install the program, set WORKER_COMMAND).

ARG CUDA_IMAGE=nvidia/cuda:12.4.1-runtime-ubuntu22.04

# --- build: the package and its runtime dependencies into a venv ----------------------
FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/gpu-worker \
 && /opt/gpu-worker/bin/pip install --upgrade pip
WORKDIR /src
# setuptools builds every package the project declares, so all of them are copied;
# only the runtime dependencies are installed (no [dev], no [embedded]).
COPY pyproject.toml README.md ./
COPY sql ./sql
COPY reactor ./reactor
COPY worker ./worker
RUN /opt/gpu-worker/bin/pip install . \
 && /opt/gpu-worker/bin/gpu-worker --version

# --- runtime ---------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# tini is PID 1: it forwards SIGTERM to the worker (which drains) and reaps any orphan a
# GPU program leaves behind.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /usr/sbin/nologin worker
COPY --from=build /opt/gpu-worker /opt/gpu-worker
ENV PATH=/opt/gpu-worker/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json
USER worker
WORKDIR /home/worker
# WORKER_ID and DATABASE_URL come from the pod's environment (the reactor sets them).
ENTRYPOINT ["/usr/bin/tini", "--", "gpu-worker"]
