# syntax=docker/dockerfile:1
#
# The API image: Flask under gunicorn, WITHOUT TensorFlow (the API never imports it).
# The same image also runs everything else that needs no TensorFlow: `upscaler migrate`, `upscaler beat`
# and the light worker (`upscaler worker --queues maintenance,webhooks`).
#
#   docker build -f deploy/api.Dockerfile -t upscaler-api .        (context: the repository root)

ARG PYTHON_VERSION=3.11

# --- build: install the project and its dependencies into a virtual environment -----------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
COPY shared ./shared
COPY worker ./worker
# Not editable: the code, the migrations and the shipped weights (package data) land in site-packages.
# (DL3013: the versions are the ranges in pyproject.toml.)
# hadolint ignore=DL3013
RUN pip install ".[postgres]" \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('tensorflow') is not None)"

# --- runtime ------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="upscaler-api" \
      org.opencontainers.image.description="Upscaler HTTP API (also: migrate, beat, light worker)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UPSCALER_API_HOST=0.0.0.0 \
    UPSCALER_API_PORT=8000
# A fixed, unprivileged UID/GID (Kubernetes' runAsNonRoot checks a numeric user).
RUN groupadd --system --gid 10001 upscaler \
    && useradd --system --uid 10001 --gid upscaler --home-dir /home/upscaler --create-home \
       --shell /usr/sbin/nologin upscaler \
    && install -d -o upscaler -g upscaler /app
COPY --from=build /opt/venv /opt/venv
# /app is the working directory (beat keeps its schedule file in $TMPDIR, not here).
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness of the process only; compose and Kubernetes probe /readyz (dependencies) themselves.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('UPSCALER_API_PORT', '8000'), timeout=4)"]
CMD ["upscaler", "api", "--host", "0.0.0.0"]
