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

# The locked requirements (with hashes) of the operator extra, in a stage of their own so that a
# pyproject.toml edit that leaves them alone does not invalidate the dependency layer.
FROM ${BASE_IMAGE} AS lock
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN uv export --frozen --no-dev --extra operator --no-emit-project --output-file /requirements.txt

# The runtime with its locked dependencies; the image starts FROM here. uv is only mounted.
FROM ${BASE_IMAGE} AS deps
# uid/gid 65532 is the non-root user the chart runs the operator as (charts/kubetune, runAsUser).
RUN groupadd --gid 65532 kubetune \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kubetune
# PYTHONMALLOC=malloc, MALLOC_ARENA_MAX=2, glibc's per-thread cache and fast bins off and its mmap threshold fixed:
# the operator gives the memory of a burst of runs back once they are gone (kubetune.handlers.memory says why;
# docs/benchmarks.md measures it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONMALLOC=malloc \
    MALLOC_ARENA_MAX=2 \
    GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0:glibc.malloc.mmap_threshold=131072
# Build-time settings (ARGs never reach the image config). UV_CACHE_DIR: `make images` points it at the
# host's uv cache (a --volume) so no wheel is downloaded twice; elsewhere the cache mount keeps them.
# UV_OFFLINE=true (`make images`): only that cache is read; a wheel missing from it fails the build.
ARG UV_CACHE_DIR=/root/.cache/uv
ARG UV_OFFLINE=false
ARG UV_LINK_MODE=copy
ARG UV_COMPILE_BYTECODE=1
# COPY (content-checked), not a bind mount: buildah reuses a RUN layer even when bind-mounted inputs change.
COPY --from=lock /requirements.txt /opt/kubetune/requirements.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv \
    uv venv --python python3.11 --no-python-downloads /opt/venv \
    && uv pip sync --python /opt/venv/bin/python --require-hashes /opt/kubetune/requirements.txt

# kubetune itself, as a wheel: a source change rebuilds this stage and one small layer of the image.
FROM lock AS wheel
ARG UV_CACHE_DIR=/root/.cache/uv
ARG UV_OFFLINE=false
COPY README.md ./
COPY operator operator
COPY trainer-image/kubetune_trainer trainer-image/kubetune_trainer
RUN --mount=type=cache,target=/root/.cache/uv \
    uv build --wheel --out-dir /dist

FROM deps
COPY --from=wheel /dist /opt/kubetune/dist
RUN --mount=type=bind,from=uv,source=/uv,target=/usr/local/bin/uv \
    uv pip install --python /opt/venv/bin/python --no-deps --no-cache --compile-bytecode /opt/kubetune/dist/kubetune-*.whl
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
