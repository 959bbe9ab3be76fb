# syntax=docker/dockerfile:1
# One image for the four services and the operator CLI. The command chooses what runs:
#   cts serve generator | bridge | orchestrator | executor     (same as python -m <service>_svc)
#   cts migrate                                                (the db-migrate Job)
#   cts archive --older-than 30d                               (the db-archive CronJob)
#   cts health                                                 (kubectl exec: GET /health on the metrics port)
# Build from the repository root with the trained model in models/ (the .joblib and its .json card):
#   docker build -t crypto-trading-system:0.1.0 .
# No secrets are baked in: DATABASE_URL and the Coinbase key come from the environment (Kubernetes Secrets).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the project and its ML extra into a virtual environment -------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package needs (the packages listed in pyproject.toml); tests, bench and data stay out.
COPY pyproject.toml ./
COPY common/ common/
COPY cts/ cts/
COPY generator_svc/ generator_svc/
COPY bridge_svc/ bridge_svc/
COPY orchestrator_svc/ orchestrator_svc/
COPY executor_svc/ executor_svc/
COPY generated/ generated/
COPY migrations/ migrations/
# Not editable: the code lands in site-packages, compiled to bytecode at install time (the root filesystem is
# read-only at run time).
RUN pip install ".[ml]" \
    && python -m compileall -q /opt/venv/lib

# --- runtime: slim base, non-root user 10001, no compilers, no sources ---------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="crypto-trading-system" \
      org.opencontainers.image.description="ML-driven crypto trading system: four gRPC services"
RUN groupadd --system --gid 10001 cts \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin cts
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The model the generator loads (MODEL_DIR=/app/models), owned by root and read-only for the service user. On
# Kubernetes /app/models is a volume: the init container seed-models copies this model into it when it is empty,
# and new models arrive with `kubectl cp` (which needs tar in the image: the Debian base has it).
COPY models/ /app/models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    MODEL_DIR=/app/models
USER 10001:10001
# gRPC: generator 8025, bridge 8022, orchestrator 8023, executor 8024; Prometheus metrics on 9022-9025.
EXPOSE 8022 8023 8024 8025 9022 9023 9024 9025
ENTRYPOINT ["cts"]
CMD ["serve", "generator"]
