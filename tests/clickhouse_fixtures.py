"""A ClickHouse *server* for the warehouse's http:// path, one per test session.

Where the server comes from, in order:
1. ``TAPEFLOW_CLICKHOUSE_URL``: ``http://user:password@host:8123`` of a server you run;
2. a testcontainers ClickHouse (the image docker-compose.yml pins), when a Docker engine answers;
3. otherwise the tests skip, naming what is missing.

Tests never share a database: ``server_warehouse`` migrates a fresh one and drops it afterwards.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from sinks.warehouse import Warehouse
from tests.kafka_fixtures import _docker_answers

URL_ENV = "TAPEFLOW_CLICKHOUSE_URL"
IMAGE = "clickhouse/clickhouse-server:25.8.8.26"  # keep in step with docker-compose.yml
NO_CLICKHOUSE = f"no ClickHouse server: set {URL_ENV} (http://user:password@host:8123) or run a Docker engine"


@pytest.fixture(scope="session")
def clickhouse_url() -> Iterator[str]:
    """``http://user:password@host:port`` of a real ClickHouse server for the whole session."""
    external = os.environ.get(URL_ENV)
    if external:
        if not external.startswith(("http://", "https://")):
            pytest.fail(f"{URL_ENV}={external!r}: expected an http(s):// URL of a ClickHouse server", pytrace=False)
        yield external
        return
    if not _docker_answers():
        pytest.skip(f"{NO_CLICKHOUSE} ({URL_ENV} is not set and no Docker engine answers)")
    try:
        from testcontainers.community.clickhouse import ClickHouseContainer
    except ImportError:
        pytest.skip(f"{NO_CLICKHOUSE} (a Docker engine answers but testcontainers is not installed: "
                    "pip install 'testcontainers==4.15.0')")
    # A non-default user with a password: the same shape as the compose stack's credentials.
    with ClickHouseContainer(IMAGE, username="tapeflow", password="test-password", dbname="tapeflow") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(8123)
        yield f"http://tapeflow:test-password@{host}:{port}"


@pytest.fixture
def server_warehouse(clickhouse_url: str) -> Iterator[Warehouse]:
    """A migrated warehouse on the server, on a database of its own, dropped afterwards."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    wh = Warehouse.connect(clickhouse_url, database=database)
    wh.apply_ddl()
    try:
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {database}")
        wh.close()
