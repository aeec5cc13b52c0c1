"""Watermarks asked of a partition that has no leader for a moment are asked again, not raised."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from topics.admin import partition_watermarks


class LeaderlessFor:
    """A consumer whose watermark requests fail with ``code`` the first ``failures`` times."""

    def __init__(self, failures: int, code: int):
        self.failures, self.code, self.asked = failures, code, 0

    def list_topics(self, topic, timeout=None):
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions={0: None, 1: None})})

    def get_watermark_offsets(self, partition, timeout=None):
        self.asked += 1
        if self.failures:
            self.failures -= 1
            raise KafkaException(KafkaError(self.code))
        return 0, 10 + partition.partition


def test_watermarks_when_partition_briefly_has_no_leader_then_asked_again_until_it_has():
    consumer = LeaderlessFor(2, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert partition_watermarks(consumer, "md.raw", timeout_s=5) == {0: (0, 10), 1: (0, 11)}
    assert consumer.asked == 4  # two refused, then both partitions


def test_watermarks_when_error_is_not_transient_then_raised_at_once():
    consumer = LeaderlessFor(1, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        partition_watermarks(consumer, "md.raw", timeout_s=5)
    assert consumer.asked == 1


def test_watermarks_when_leader_never_comes_back_then_raised_after_the_timeout():
    consumer = LeaderlessFor(10**6, KafkaError.NOT_LEADER_FOR_PARTITION)
    with pytest.raises(KafkaException):
        partition_watermarks(consumer, "md.raw", timeout_s=0.3)
    assert consumer.asked > 1 and consumer.asked < 10  # asked again, then gave up
