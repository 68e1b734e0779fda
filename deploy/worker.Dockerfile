# syntax=docker/dockerfile:1
#
# The inference worker image: TensorFlow comes from the official TensorFlow image (CUDA and cuDNN
# included for the -gpu tags, Python 3.11), the project is installed on top WITHOUT touching it.
#
#   docker build -f deploy/worker.Dockerfile -t upscaler-worker .                     (GPU, default)
#   docker build -f deploy/worker.Dockerfile --build-arg TF_IMAGE=tensorflow/tensorflow:2.18.0 \
#       -t upscaler-worker-cpu .                                                    (CPU-only hosts)
#
# The GPU image needs the NVIDIA driver and the NVIDIA Container Toolkit on the host, nothing else.
# Pick the TensorFlow release with TF_IMAGE (any 2.16+ image, which all ship Keras 3).

ARG TF_IMAGE=tensorflow/tensorflow:2.18.0-gpu
FROM ${TF_IMAGE}
LABEL org.opencontainers.image.title="upscaler-worker" \
      org.opencontainers.image.description="Upscaler Celery worker with TensorFlow (inference queue)"
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
COPY shared ./shared
COPY worker ./worker
# TensorFlow is already in the base image: pin it (and the packages it was built against) with a
# constraints file, so installing the project can never replace the CUDA-enabled build.
# Keras 3 usually comes with TensorFlow 2.16+; naming it makes sure (the `worker` extra's range); libvips
# streams big outputs (worker/streaming.py).
# hadolint ignore=DL3013
RUN python3 -m pip freeze \
        | grep -iE '^(tensorflow[a-z_-]*|keras|numpy|ml[-_]dtypes|h5py|protobuf)==' > /tmp/tf-constraints.txt \
    && python3 -m pip install --constraint /tmp/tf-constraints.txt ".[postgres,streaming]" "keras>=3.3,<4" \
    && rm /tmp/tf-constraints.txt
# The weights are package data (shared/weights): build every network the catalog serves and load its
# weights once from the installed package (on the CPU, outside /src), so the build fails if any is
# missing or this Keras cannot read it (the robust network auto sends most photos to, too).
WORKDIR /
RUN rm -rf /src \
    && python3 -c "import keras, tensorflow as tf; from shared.settings import Settings; \
from worker.engine.registry import EngineRegistry; r = EngineRegistry(Settings()); \
names = sorted(n for n, m in r.catalog.items() if m.weights); [r.get(n) for n in names]; \
print('tensorflow', tf.__version__, 'keras', keras.__version__, 'weights ok:', names)"
# A fixed, unprivileged UID/GID (Kubernetes' runAsNonRoot checks a numeric user).
RUN groupadd --system --gid 10001 upscaler \
    && useradd --system --uid 10001 --gid upscaler --home-dir /home/upscaler --create-home \
       --shell /usr/sbin/nologin upscaler \
    && install -d -o upscaler -g upscaler /app
WORKDIR /app
USER 10001:10001
# Healthy = the Celery node answers a broker ping (a busy prefork worker still answers: the
# parent process replies while the child runs the job). Needs the container's UPSCALER_* env.
HEALTHCHECK --interval=60s --timeout=30s --start-period=120s --retries=3 \
    CMD ["/bin/sh", "-c", "celery -A worker.celery_app inspect ping --destination \"celery@$HOSTNAME\" --timeout 10 >/dev/null && upscaler worker-health >/dev/null"]
# One process per GPU: scale with more containers/pods, not with --concurrency (see docs/deploy.md).
CMD ["upscaler", "worker", "--queues", "inference", "--concurrency", "1"]
