"""Topics from the catalog on a real broker: partitions, compaction, idempotent creation."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from topics.admin import create_topics, delete_topics, describe_topics, topic_name
from topics.catalog import TOPICS, spec

pytestmark = pytest.mark.integration


def _broker_view(bootstrap: str, names: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10)
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names])
    configs = {r.name: {k: e.value for k, e in f.result(timeout=10).items()} for r, f in futures.items()}
    return {n: (len(metadata.topics[n].partitions), configs[n]) for n in names}


def test_create_topics_when_catalog_then_every_topic_with_its_partitions_and_control_compacted(kafka_topics):
    names = [kafka_topics.name(t.name) for t in TOPICS]
    view = _broker_view(kafka_topics.bootstrap, names)
    for topic in TOPICS:
        partitions, configs = view[kafka_topics.name(topic.name)]
        assert partitions == topic.partitions, topic.name
        assert configs["cleanup.policy"] == topic.configs()["cleanup.policy"], topic.name
    assert view[kafka_topics.name("control")][1]["cleanup.policy"] == "compact"
    assert view[kafka_topics.name("md.raw")][1]["retention.ms"] == spec("md.raw").configs()["retention.ms"]


def test_create_topics_when_run_twice_then_second_is_a_no_op_reporting_exists(kafka_topics):
    before = _broker_view(kafka_topics.bootstrap, [kafka_topics.name(t.name) for t in TOPICS])
    again = create_topics(kafka_topics.bootstrap, prefix=kafka_topics.prefix)
    assert [r.action for r in again] == ["exists"] * len(TOPICS)
    assert _broker_view(kafka_topics.bootstrap, list(before)) == before
    rows = describe_topics(kafka_topics.bootstrap, prefix=kafka_topics.prefix)
    assert [(r.name, r.status) for r in rows] == [(kafka_topics.name(t.name), "ok") for t in TOPICS]
    control = next(r for r in rows if r.name == kafka_topics.name("control"))
    assert (control.partitions, control.cleanup_policy, control.retention) == (1, "compact", "compacted")


def test_create_topics_when_existing_topic_differs_then_reported_never_changed(kafka_bootstrap):
    prefix = "differs."
    first = create_topics(kafka_bootstrap, [spec("md.bars"), spec("dlq")], partitions_override=2, prefix=prefix)
    try:
        assert [(r.action, r.detail) for r in first] == [("created", "2 partitions"), ("created", "1 partition")]
        second = create_topics(kafka_bootstrap, [spec("md.bars"), spec("dlq")], prefix=prefix)
        assert second[0].action == "differs"
        assert second[0].detail == "partitions 2 on the broker, 4 in the catalog"
        assert second[1].action == "exists"  # single-partition topics ignore the override
        assert _broker_view(kafka_bootstrap, [topic_name("md.bars", prefix)])[topic_name("md.bars", prefix)][0] == 2
    finally:
        delete_topics(kafka_bootstrap, [topic_name("md.bars", prefix), topic_name("dlq", prefix)])


def test_describe_topics_when_catalog_topic_absent_then_row_says_missing(kafka_bootstrap):
    rows = describe_topics(kafka_bootstrap, prefix="never-created.")
    assert {r.status for r in rows} == {"missing"}
    assert len(rows) == len(TOPICS)


def test_topic_name_when_prefix_illegal_then_value_error():
    assert topic_name("md.raw", "t1.") == "t1.md.raw"
    with pytest.raises(ValueError, match="not a legal Kafka topic name"):
        topic_name("md.raw", "a b/")
