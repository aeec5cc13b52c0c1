"""Consumer lag of the split topology's consumer groups, read from the Kafka brokers."""

from __future__ import annotations

from typing import Any


def consumer_lag(brokers: str, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """One row per (group, topic): committed offsets behind the high watermark, summed over partitions."""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})
    groups = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout_s)
    rows: list[dict[str, Any]] = []
    probe = Consumer({"bootstrap.servers": brokers, "group.id": "tapeflow-dashboard-lag-probe",
                      "enable.auto.commit": False})
    try:
        for listing in groups.valid:
            futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(listing.group_id)])
            committed = futures[listing.group_id].result(timeout_s).topic_partitions or []
            lag: dict[str, int] = {}
            for tp in committed:
                if tp.offset < 0:
                    continue
                _, high = probe.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout_s)
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - tp.offset)
            rows.extend({"group": listing.group_id, "topic": topic, "lag": n} for topic, n in sorted(lag.items()))
    finally:
        probe.close()
    return rows
