# The CMS policy decision service.
#
#   docker build -t cms-policy-decisions .
#   docker run --rm -p 50051:50051 cms-policy-decisions --host 0.0.0.0 --insecure-plaintext   # local try-out only
#
# Two stages: a builder with gcc (durable-rules compiles a C extension) that also generates the
# gRPC stubs from protos/ (setup.py, grpcio-tools in an isolated build environment), and a slim
# runtime with only the installed virtualenv, run as an unprivileged user with a fixed uid/gid.
# The policy files are baked into the image (inside the installed `rules` package); give
# `--policies DIR` to serve a mounted directory instead (it is watched and hot-reloaded).
#
# In production (see deploy/kubernetes.yaml):
#   - TLS: the certificate and key are mounted from a secret at /etc/cms-policy/tls (tls.crt,
#     tls.key); the default command serves TLS on 0.0.0.0:50051 and fails to start without them.
#   - the decision log: CMS_POLICY_DECISION_LOG=postgresql://user@host:5432/db?sslmode=verify-full
#     (password in PGPASSWORD or a PGPASSFILE), shared by every replica;
#   - its key: CMS_POLICY_LOG_KEY (base64; first line seals, later lines open older rows) from a secret.
# Without CMS_POLICY_DECISION_LOG the log is SQLite in /var/lib/cms-policy/var/ (one replica, and
# only with a writable volume there).

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/cms-policy/venv
WORKDIR /src
# Only what the build reads (see .dockerignore): the project definition, protos, the packages.
COPY pyproject.toml setup.py README.md ./
COPY protos/ protos/
COPY rules/ rules/
COPY service/ service/
# A regular (not editable) install: the stubs and the policy files end up in site-packages.
RUN /opt/cms-policy/venv/bin/pip install /src \
 && /opt/cms-policy/venv/bin/python -c "import durable.lang, psycopg, cms_policy.v1.policy_pb2_grpc, service.server" \
 && /opt/cms-policy/venv/bin/python -m rules validate --no-notes

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="cms-policy-decisions" \
      org.opencontainers.image.description="UK Child Maintenance Service policy decisions over gRPC"
RUN groupadd --gid 10001 cms-policy \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/cms-policy --no-create-home \
      --shell /usr/sbin/nologin cms-policy \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/cms-policy
COPY --from=builder /opt/cms-policy/venv /opt/cms-policy/venv
ENV PATH=/opt/cms-policy/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/cms-policy
USER 10001:10001
EXPOSE 50051
# No HEALTHCHECK: Kubernetes ignores it; the pods are probed with `python -m service.probe`
# (the gRPC health service over TLS), see deploy/kubernetes.yaml.
ENTRYPOINT ["python", "-m", "service"]
CMD ["--host", "0.0.0.0", "--port", "50051", \
     "--tls-cert", "/etc/cms-policy/tls/tls.crt", "--tls-key", "/etc/cms-policy/tls/tls.key", \
     "--log-format", "json"]
