# syntax=docker/dockerfile:1
# tapeflow: one image for every stage of the split topology, the feed, the topic admin and the
# dashboard (docker-compose.yml picks the command). Two stages: the builder resolves the pinned
# dependencies (requirements.lock, the exact runtime set of pyproject.toml's ranges) into a venv; the runtime copies that venv only (no pip cache, no
# compilers, no source tree beyond the installed packages).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --quiet pip==26.3
WORKDIR /src
# Dependencies before the source: editing code must not re-download chDB, Bytewax and friends.
COPY pyproject.toml requirements.lock ./
RUN /opt/venv/bin/pip install --quiet --only-binary=:all: -r requirements.lock
COPY README.md ./
COPY schemas ./schemas
COPY config ./config
COPY market ./market
COPY topics ./topics
COPY strategies ./strategies
COPY venues ./venues
COPY sinks ./sinks
COPY trading ./trading
COPY feeds ./feeds
COPY flows ./flows
COPY research ./research
COPY dashboards ./dashboards
COPY tapeflow ./tapeflow
# A regular (non-editable) install: the runtime stage needs the venv and nothing from /src.
RUN /opt/venv/bin/pip install --quiet --no-deps . \
 && /opt/venv/bin/tapeflow --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="tapeflow" \
      org.opencontainers.image.description="Trade from a live market tape: Kafka, Bytewax, ClickHouse, Panel."
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A fixed uid/gid so named volumes keep one owner across rebuilds. Every mount point of
# docker-compose.yml exists here, owned by the app user: Docker seeds an empty named volume with
# the image directory's owner, while a mount point missing from the image would be root's.
RUN groupadd --system --gid 10001 tapeflow \
 && useradd --system --uid 10001 --gid tapeflow --home-dir /app --shell /usr/sbin/nologin tapeflow \
 && mkdir -p /app /data/models /data/recovery/market /data/recovery/normalize /data/recovery/bars /data/recovery/features \
             /data/recovery/signals /data/recovery/trading /data/recovery/risk /data/recovery/execution \
             /data/recovery/pnl /data/recovery/sink \
 && ln -s /data /app/data \
 && chown -R tapeflow:tapeflow /app /data
COPY --from=builder /opt/venv /opt/venv
# The CLI's relative defaults (data/models, data/control.jsonl, chdb://./data/warehouse) resolve
# under /app/data, which is /data: every piece of state lands on the volume.
WORKDIR /app
USER tapeflow
VOLUME ["/data"]
EXPOSE 5006
# Stages, the feed and the one-shot topic admin have no port to probe; docker-compose.yml gives
# the dashboard its own HTTP check and the restart policy covers a crashed stage.
HEALTHCHECK NONE
ENTRYPOINT ["tapeflow"]
CMD ["--help"]
