# syntax=docker/dockerfile:1.7
# The core API: tenants, identity, plugins, gateway decision endpoint (plexica serve core).
# Build from the repository root: docker build -f deploy/docker/core.Dockerfile -t plexica/core .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/plexica
# Dependencies first, hash-checked, so that a source change reuses this layer.
COPY requirements.runtime.lock ./
RUN /opt/plexica/bin/pip install --require-hashes --no-deps -r requirements.runtime.lock
COPY pyproject.toml README.md ./
COPY packages/plexica-sdk ./packages/plexica-sdk
COPY src ./src
RUN /opt/plexica/bin/pip install --no-deps ./packages/plexica-sdk ./

FROM ${PYTHON_IMAGE} AS runtime
# /var/lib/plexica/gateway: an empty named volume mounted there (Compose's gateway-config) takes
# this directory's owner, so the non-root routes watcher can write Traefik's file into it.
RUN groupadd --system --gid 10001 plexica \
 && useradd --system --uid 10001 --gid plexica --home-dir /home/plexica --create-home plexica \
 && install -d -o plexica -g plexica /var/lib/plexica/gateway
COPY --from=build /opt/plexica /opt/plexica
ENV PATH=/opt/plexica/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PLEXICA_HOST=0.0.0.0 \
    PLEXICA_PORT=3000 \
    PLEXICA_LOG_FORMAT=json \
    PLEXICA_DATA_DIR=/tmp/plexica
USER 10001:10001
WORKDIR /home/plexica
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PLEXICA_PORT', '3000') + '/health', timeout=2)"]
ENTRYPOINT ["plexica"]
CMD ["serve", "core"]
