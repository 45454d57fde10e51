# kubetune operator image: the `kubetune` CLI with the operator extra (kopf, kubernetes, prometheus-client).
# The trainer has its own image (trainer-image/Dockerfile); the operator never imports it.
# Build from the repository root: `make image-operator` (here, with buildah) or `docker build .` (anywhere).
#
# BASE_IMAGE is the public Python base pinned by the digest of its multi-arch index; `make images` builds
# FROM a Debian bookworm + Python 3.11 image made locally (hack/build-base-image.sh) because CI reaches no
# registry. UV_IMAGE provides the uv binary (the version that wrote uv.lock). Details: docs/images.md.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# Locked dependencies (hash-checked), rebuilt only when uv.lock changes.
FROM ${BASE_IMAGE} AS deps
COPY --from=uv /uv /usr/local/bin/uv
# UV_CACHE_DIR: `make images` points it at the host's uv cache (a --volume) so no wheel is downloaded twice;
# elsewhere the cache mount keeps it between builds.
ARG UV_CACHE_DIR=/root/.cache/uv
# UV_OFFLINE=true (`make images`): only that cache is read; a wheel missing from it fails the build.
ARG UV_OFFLINE=false
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --extra operator --no-install-project --no-editable

# kubetune itself, as a wheel: a source change rebuilds this and one small layer, not the dependencies.
FROM deps AS wheel
ARG UV_CACHE_DIR=/root/.cache/uv
ARG UV_OFFLINE=false
COPY operator operator
COPY trainer-image/kubetune_trainer trainer-image/kubetune_trainer
RUN --mount=type=cache,target=/root/.cache/uv \
    uv build --wheel --out-dir /dist

FROM ${BASE_IMAGE}
# uid/gid 65532 is the non-root user the chart runs the operator as (charts/kubetune, runAsUser).
RUN groupadd --gid 65532 kubetune \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kubetune
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv \
    --mount=type=bind,from=wheel,source=/dist,target=/dist \
    uv pip install --python /opt/venv/bin/python --no-deps --no-cache --compile-bytecode /dist/kubetune-*.whl
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# metrics (KUBETUNE_METRICS_PORT, chart metrics.port) and kopf's liveness endpoint (chart livenessPort)
EXPOSE 8080 8081
ENTRYPOINT ["kubetune", "operator"]
# Labels last: CREATED changes on every build and must not invalidate the cached layers above.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="kubetune-operator" \
      org.opencontainers.image.description="Kubernetes operator that runs LLM fine-tuning declaratively" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
