# blenderd: `docker compose up` (see compose.yaml and README.md, "Self-hosting").
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_BACKEND=torch \
    HF_HOME=/data/huggingface

RUN useradd --create-home --uid 10001 --user-group blenderd \
    && mkdir -p /data \
    && chown blenderd:blenderd /data

WORKDIR /app

# PyPI's Linux wheel of torch is the CUDA build: it uses an NVIDIA GPU when the container gets
# one and runs on the CPU otherwise. Installed first, in its own layer, as it is the largest.
ARG TORCH=torch==2.13.0
# hadolint ignore=DL3013
RUN pip install "${TORCH}"

COPY pyproject.toml README.md ./
COPY adapters ./adapters
COPY bot ./bot
COPY memory ./memory
COPY model ./model
COPY safety ./safety
# hadolint ignore=DL3013
RUN pip install . && rm -rf /app/adapters /app/bot /app/memory /app/model /app/safety

COPY docker/config.yaml /app/config.yaml

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# The first start downloads the model (progress in the log), hence the long start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 CMD ["python", "-m", "bot", "healthcheck"]
ENTRYPOINT ["python", "-m", "bot", "run"]
