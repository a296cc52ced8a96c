# The reactor image: `gpu-reactor run` with /metrics, /status, /healthz and /readyz on :9108.
#   docker build -t gpu-reactor .
#   docker run --env-file .env -p 9108:9108 gpu-reactor
#   docker run --env-file .env gpu-reactor gpu-reactor check
# The GPU pods run a different, smaller image: ops/worker.Dockerfile.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reactor ./reactor
COPY worker ./worker
COPY sql ./sql
# Wheels of the package and every dependency (uvloop included: it is a default
# dependency on Linux), so the runtime stage needs no compiler and no network.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REACTOR_HTTP_HOST=0.0.0.0 \
    REACTOR_HTTP_PORT=9108 \
    LOG_FORMAT=json
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels gpu-reactor \
    && rm -rf /wheels \
    && python -c "import uvloop, reactor.cli, reactor.http.server" \
    && groupadd --system --gid 10001 reactor \
    && useradd --system --uid 10001 --gid reactor --home-dir /nonexistent \
               --no-create-home --shell /usr/sbin/nologin reactor
# Settings come from the environment (an orchestrator's secrets); no .env in the image.
WORKDIR /tmp
USER 10001:10001
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('REACTOR_HTTP_PORT', '9108'), timeout=3)"]
# SIGTERM (docker stop, Kubernetes) starts a graceful stop: give it up to 30 s.
STOPSIGNAL SIGTERM
CMD ["gpu-reactor", "run"]
