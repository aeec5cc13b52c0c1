"""Every Kafka client that carries tapeflow's records turns Nagle's algorithm off
(``socket.nagle.disable``, see ``topics.kafka_records.CLIENT_CONFIG``): librdkafka leaves it on,
and each hop of the split pipeline then waited for delayed ACKs."""

from __future__ import annotations

from types import SimpleNamespace

import confluent_kafka
import pytest

from topics.kafka_records import CLIENT_CONFIG

NAGLE_OFF = "socket.nagle.disable"


def nagle_off(config: dict) -> bool:
    return str(config.get(NAGLE_OFF)).lower() == "true"


class _Made:
    """A confluent-kafka client's face that keeps the configuration it was made with."""

    configs: list[dict] = []

    def __init__(self, config: dict, **kwargs):
        _Made.configs.append(config)

    def subscribe(self, topics) -> None:
        pass


@pytest.fixture
def made(monkeypatch) -> list[dict]:
    _Made.configs = []
    monkeypatch.setattr(confluent_kafka, "Producer", _Made)
    monkeypatch.setattr(confluent_kafka, "Consumer", _Made)
    return _Made.configs


def test_client_config_turns_nagle_off_and_keeps_the_short_reconnect_back_off():
    assert nagle_off(CLIENT_CONFIG)
    assert CLIENT_CONFIG["reconnect.backoff.max.ms"] == "1000"


def test_stage_producer_and_consumer_when_built_then_turn_nagle_off():
    from flows.kafka_sink import PRODUCER_CONFIG
    from flows.kafka_source import BULK_FETCH_CONFIG, _KafkaSource

    assert nagle_off(PRODUCER_CONFIG)
    source = _KafkaSource(["127.0.0.1:1"], ["p.md.trades"], True, confluent_kafka.OFFSET_BEGINNING, 5_000)
    assert nagle_off(source.config)
    bulk = _KafkaSource(["127.0.0.1:1"], ["p.md.trades"], True, confluent_kafka.OFFSET_BEGINNING, 5_000,
                        extra_config=BULK_FETCH_CONFIG)
    assert nagle_off(bulk.config), "the warehouse sink's bulk fetch keeps Nagle off too"


def test_feed_producer_control_sender_and_record_clients_when_made_then_turn_nagle_off(made):
    from topics.client import RecordConsumer, RecordProducer
    from topics.control_sender import KafkaControlSender
    from topics.producer import PRODUCER_DEFAULTS

    assert nagle_off(PRODUCER_DEFAULTS)
    KafkaControlSender("127.0.0.1:1")
    RecordProducer("127.0.0.1:1")
    RecordConsumer("127.0.0.1:1", ["pnl"], group="g")
    assert len(made) == 3 and all(nagle_off(config) for config in made), made


def test_a_caller_config_may_turn_nagle_back_on(made):
    from topics.client import RecordConsumer

    RecordConsumer("127.0.0.1:1", ["pnl"], group="g", config={NAGLE_OFF: "false"})
    assert not nagle_off(made[0])


def test_group_sink_and_offset_reader_when_made_then_turn_nagle_off(monkeypatch):
    import sinks.group_sink as group_sink
    from sinks.offset_reader import KafkaOffsetReader
    from topics.kafka_records import KafkaEndpoint

    class Stop(Exception):
        pass

    def member(**kwargs):
        raise Stop(kwargs)

    monkeypatch.setattr(group_sink, "_Member", member)
    with pytest.raises(Stop) as stopped:
        group_sink.sink_application(KafkaEndpoint(("127.0.0.1:1",)), SimpleNamespace(group="g"), "/nonexistent")
    (kwargs,) = stopped.value.args
    assert nagle_off(kwargs["consumer_extra_config"])
    assert kwargs["consumer_extra_config"]["fetch.wait.max.ms"] == 100
    assert nagle_off(KafkaOffsetReader(("127.0.0.1:1",))._config)


def test_quix_configs_for_users_apps_turn_nagle_off_and_keep_the_stages_partitioner():
    from topics.client import QUIX_CONSUMER_CONFIG, QUIX_PRODUCER_CONFIG

    assert nagle_off(QUIX_PRODUCER_CONFIG) and nagle_off(QUIX_CONSUMER_CONFIG)
    assert QUIX_PRODUCER_CONFIG["partitioner"] == "consistent_random"
