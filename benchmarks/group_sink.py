"""Warehouse sink throughput: rows landed per second by the consumer-group sink (Quix Streams) with
1 and 2 members, beside the Bytewax sink it replaced as the split topology's ``sink`` stage.

    python benchmarks/group_sink.py [--brokers HOST:PORT] [--ticks N]

A synthetic tape is published to md.raw under a fresh topic prefix and the market stage runs over it
once (md.raw, md.trades, md.quotes, md.bars, features: what the sink lands in a replay); then each
sink drains every topic into one chDB warehouse under a run id of its own. The clock runs from the
sink's start (group join included) until its last row is in ClickHouse. chDB opens a folder in one
process, so the 2 members are threads of this process, inserting through one engine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from feeds import make_feed  # noqa: E402
from flows.pipeline import run_flow  # noqa: E402
from flows.split import SplitConfig, build_stage_flow  # noqa: E402
from sinks.group_sink import SinkMembers  # noqa: E402
from sinks.warehouse import Warehouse  # noqa: E402
from sinks.writer import BatchingWriter  # noqa: E402
from topics.admin import create_topics, delete_topics, topic_name  # noqa: E402
from topics.catalog import TOPICS  # noqa: E402
from topics.kafka_records import KafkaEndpoint  # noqa: E402
from topics.lag import group_lag  # noqa: E402
from topics.producer import TopicPublisher, publish_ticks  # noqa: E402

TABLES = [t.table for t in TOPICS]


def rows_of(wh: Warehouse, run_id: str) -> int:
    return sum(wh.query(f"SELECT count() FROM {t} WHERE run_id = {{r:String}}", {"r": run_id}).scalar() for t in TABLES)


def bytewax_sink(wh: Warehouse, endpoint: KafkaEndpoint) -> float:
    writer = BatchingWriter(wh, "bytewax")
    started = time.perf_counter()
    run_flow(build_stage_flow("sink", SplitConfig(endpoint=endpoint), writer), 0.5)
    writer.flush()
    return time.perf_counter() - started


def group_sink(wh: Warehouse, endpoint: KafkaEndpoint, brokers: str, members: int) -> float:
    run_id = f"quix-{members}"
    group = SinkMembers(wh, endpoint, run_id, members, commit_interval_s=1.0)
    total = sum(r.end for r in group_lag(brokers, group.group, endpoint.prefix))
    started = time.perf_counter()
    done: list[float] = []

    def watch() -> None:  # the moment every message has been inserted, then stop the members
        while group.messages_landed < total and not group.errors:
            time.sleep(0.01)
        done.append(time.perf_counter())
        group.stop()

    threading.Thread(target=watch, daemon=True).start()
    group.run()
    return done[0] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default=os.environ.get("TAPEFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:39092"))
    parser.add_argument("--ticks", type=int, default=100_000)
    args = parser.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    create_topics(args.brokers, prefix=prefix)
    try:
        publisher = TopicPublisher(args.brokers, prefix=prefix)
        publish_ticks(make_feed("synthetic", seed=7, max_ticks=args.ticks).ticks(), publisher)
        endpoint = KafkaEndpoint((args.brokers,), prefix, tail=False)
        run_flow(build_stage_flow("market", SplitConfig(endpoint=endpoint)), 0.5)
        with tempfile.TemporaryDirectory() as folder:
            wh = Warehouse.connect(f"chdb://{folder}/warehouse")
            wh.apply_ddl()
            print(f"{args.ticks:,} ticks; market stage ran; sinks land every catalog topic into chDB")
            for name, run_id, run in (("bytewax sink, 1 process", "bytewax", lambda: bytewax_sink(wh, endpoint)),
                                      ("group sink, 1 member", "quix-1", lambda: group_sink(wh, endpoint, args.brokers, 1)),
                                      ("group sink, 2 members", "quix-2", lambda: group_sink(wh, endpoint, args.brokers, 2))):
                seconds = run()
                rows = rows_of(wh, run_id)
                print(f"{name:<26} {rows:>10,} rows in {seconds:6.2f} s = {rows / seconds:>10,.0f} rows/s")
            wh.close()
    finally:
        delete_topics(args.brokers, [topic_name(t.name, prefix) for t in TOPICS])


if __name__ == "__main__":
    main()
