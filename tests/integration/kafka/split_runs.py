"""Driving the split topology in tests: publish a tape to md.raw, run stages against a broker."""

from __future__ import annotations

from confluent_kafka import Producer

from flows.desk import DeskConfig
from flows.kafka_io import KafkaEndpoint
from flows.normalize import NormalizeConfig
from flows.pipeline import TradingConfig, feed_universe, run_flow
from flows.split import SplitConfig, build_stage_flow
from sinks.writer import BatchingWriter
from topics.serde import encode

UPSTREAM = ("normalize", "bars", "features", "signals")


def publish_tape(bootstrap: str, prefix: str, feed) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                         "compression.type": "lz4"})
    count = 0
    for tick in feed.ticks():
        message = encode("md.raw", tick)
        producer.produce(prefix + "md.raw", message.value, message.key, headers=list(message.headers))
        count += 1
        if count % 5_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0, "md.raw messages not delivered"
    return count


def split_config(bootstrap: str, prefix: str, feed) -> SplitConfig:
    """What ``tapeflow flow STAGE --until-end --symbols ...`` configures: replay complete topics."""
    universe = feed_universe(feed)
    desk = DeskConfig(universe=universe, silent_after_ns=10**18)
    trading = TradingConfig(desk=desk, universe=universe, max_wait_bars=10**9)
    return SplitConfig(endpoint=KafkaEndpoint((bootstrap,), prefix, tail=False), normalize=NormalizeConfig(),
                       trading=trading)


def run_stages(cfg: SplitConfig, stages, workers: int = 1) -> None:
    for stage in stages:
        run_flow(build_stage_flow(stage, cfg), 0.5, workers=workers)


def sink_to(wh, cfg: SplitConfig, run_id: str) -> None:
    writer = BatchingWriter(wh, run_id)
    run_flow(build_stage_flow("sink", cfg, writer), 0.5)
    writer.flush()
