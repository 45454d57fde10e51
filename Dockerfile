# kubetune operator image: the `kubetune` CLI with the operator extra (kopf, kubernetes, prometheus-client).
# The trainer has its own image (trainer-image/Dockerfile); the operator never imports it.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir uv==0.13.9
COPY pyproject.toml uv.lock README.md ./
COPY operator operator
COPY trainer-image/kubetune_trainer trainer-image/kubetune_trainer
RUN uv export --frozen --no-dev --extra operator --no-emit-project --output-file requirements.txt \
    && pip install --no-cache-dir --require-hashes -r requirements.txt \
    && pip install --no-cache-dir --no-deps .

FROM python:3.11-slim-bookworm
COPY --from=build /usr/local /usr/local
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["kubetune", "operator"]
