# One image for the chat service, the presence service and the ChatCell operator:
#   cellchat run | cellchat presence | chatcell-operator
# The ChatCell's spec.image and the Helm chart's image both default to cellchat:0.1.0, which
# is what `docker build -t cellchat:0.1.0 .` makes (docs/kubernetes.md loads it into kind).

# Pinned to an exact Python patch release and Debian release; bump deliberately.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: install the project and its dependencies into a virtualenv --------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/cellchat
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cql ./cql
COPY services ./services
COPY operator ./operator
# Every dependency ships binary wheels for CPython 3.11 on linux (scylla-driver with its libev
# reactor, cryptography, protobuf), so no compiler is needed even here. A regular (not
# editable) install, compiled to bytecode by pip: the final stage copies the virtualenv
# alone, without /src and without pip.
RUN /opt/cellchat/bin/pip install ".[operator]" \
 && /opt/cellchat/bin/pip uninstall --yes pip

# --- runtime: the virtualenv and a non-root user, nothing else ------------------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 cellchat \
 && useradd --system --uid 10001 --gid cellchat --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin cellchat
COPY --from=build /opt/cellchat /opt/cellchat
ENV PATH=/opt/cellchat/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /nonexistent
# chat gRPC, chat WebSocket, ops (/healthz /readyz /metrics), presence gRPC
EXPOSE 50051 8080 9090 50061
CMD ["cellchat", "run"]
