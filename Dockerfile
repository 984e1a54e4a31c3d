# syntax=docker/dockerfile:1
# DataKit server image. Build:  docker build -t datakit/db .
#                      Run:    docker run -p 5640:5640 -p 9090:9090 -v datakit-data:/data datakit/db
# The `client` target mounts the server at /db (run it with --privileged).

ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY datakit ./datakit
RUN python -m venv /opt/datakit \
 && /opt/datakit/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/datakit/bin/pip install --no-cache-dir .

FROM ${PYTHON_IMAGE} AS runtime
# git is needed for --auto-push; ca-certificates for https remotes.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 1000 --home-dir /data --shell /usr/sbin/nologin datakit \
 && mkdir -p /data && chown datakit:datakit /data
COPY --from=build /opt/datakit /opt/datakit
ENV PATH=/opt/datakit/bin:$PATH \
    PYTHONUNBUFFERED=1
USER datakit
# datakit runs as PID 1, where SIGTERM (docker stop's default) has no default
# action and the server installs no handler: stop would wait 10 s and SIGKILL.
# SIGINT raises KeyboardInterrupt, which shuts the server down at once.
STOPSIGNAL SIGINT
VOLUME ["/data"]
EXPOSE 5640 9090 9418
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 5640), 4).close()"]
ENTRYPOINT ["datakit", "serve"]
CMD ["--git=/data", "--listen-9p=tcp://0.0.0.0:5640", "--listen-prometheus=0.0.0.0:9090", "--listen-git=tcp://0.0.0.0:9418", "-v"]

# A client image: `docker run -it --privileged --network datakit-net datakit/client`
# mounts the server named `datakit` at /db and opens a shell.
FROM runtime AS client
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends util-linux procps \
 && rm -rf /var/lib/apt/lists/*
ENV DATAKIT_HOST=datakit DATAKIT_PORT=5640
HEALTHCHECK NONE
ENTRYPOINT []
CMD ["sh", "-c", "datakit mount -p \"$DATAKIT_PORT\" \"$(getent hosts \"$DATAKIT_HOST\" | cut -d' ' -f1)\" /db && ls /db && exec sh"]


# DataKitCI (compose profile `ci`): the runtime plus the test tools the
# self-CI jobs of deploy/self-ci.toml use. It handles SIGTERM itself.
FROM runtime AS ci
USER root
COPY --from=build /src /tmp/src
RUN /opt/datakit/bin/pip install --no-cache-dir '/tmp/src[test]' \
 && rm -rf /tmp/src \
 && mkdir -p /var/lib/datakit-ci && chown datakit:datakit /var/lib/datakit-ci
USER datakit
STOPSIGNAL SIGTERM
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8080), 4).close()"]
ENTRYPOINT ["datakit", "ci"]
CMD ["--config", "/etc/datakit-ci/ci.toml", "--listen", "0.0.0.0:8080"]

FROM runtime
