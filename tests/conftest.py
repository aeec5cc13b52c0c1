"""Registers the shared fixtures (defined in tests/fixtures.py, per the project's style)."""

from tests.fixtures import module_warehouse, warehouse, warehouse_path  # noqa: F401
from tests.kafka_fixtures import kafka_bootstrap, kafka_topics, session_kafka  # noqa: F401
from tests.clickhouse_fixtures import clickhouse_url, server_warehouse  # noqa: F401
