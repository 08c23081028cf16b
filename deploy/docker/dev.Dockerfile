# syntax=docker/dockerfile:1.7
# Development image for any service: the source is bind-mounted at /app and the process restarts
# on change (watchfiles). SERVICE is what follows `plexica serve`, e.g. "core" or "plugin crm".
# docker build -f deploy/docker/dev.Dockerfile -t plexica/dev .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/plexica
# The full lock (dev tools included), hash-checked, as scripts/bootstrap installs it.
COPY requirements.lock /tmp/requirements.lock
RUN /opt/plexica/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock

# The workspace members installed editable at /app, where docker-compose.dev.yml bind-mounts the
# live source: code changes need no rebuild; a new plugin or dependency does.
COPY . /app
RUN /opt/plexica/bin/pip install --no-deps -e /app -e /app/packages/plexica-sdk \
 && for p in /app/plugins/*/; do \
      if [ -f "$p/pyproject.toml" ]; then /opt/plexica/bin/pip install --no-deps -e "$p"; fi; \
    done

FROM ${PYTHON_IMAGE} AS dev
RUN groupadd --system --gid 10001 plexica \
 && useradd --system --uid 10001 --gid plexica --home-dir /home/plexica --create-home plexica
COPY --from=deps /opt/plexica /opt/plexica
COPY --from=deps /app /app
ENV PATH=/opt/plexica/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PLEXICA_HOST=0.0.0.0 \
    PLEXICA_PORT=3000 \
    PLEXICA_LOG_FORMAT=console \
    PLEXICA_DATA_DIR=/tmp/plexica \
    SERVICE=core
USER 10001:10001
WORKDIR /app
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PLEXICA_PORT', '3000') + '/health', timeout=2)"]
CMD ["sh", "-c", "exec watchfiles --filter python \"plexica serve $SERVICE\" /app/src /app/packages /app/plugins"]
