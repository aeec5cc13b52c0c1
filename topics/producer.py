"""Publish a feed's ticks to ``md.raw``: the entry of the split (scale-out) topology.

Messages are keyed by symbol (one symbol's ticks stay in order on one partition) and encoded by
:func:`topics.serde.encode`. The producer is idempotent, so a retry after a lost ack never writes a
tick twice. Every delivery failure is counted and the first few are kept with their reason: a
publish that lost ticks must say so and exit non-zero, never look like a clean run.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, TextIO

from schemas import Record
from topics.admin import topic_name
from topics.kafka_records import CLIENT_CONFIG
from topics.serde import encode

# Idempotence implies acks=all and bounded in-flight requests; lz4 is the cheapest codec per byte
# saved on JSON ticks; 5 ms of linger fills batches at thousands of ticks/s without adding latency
# a person would see. message.timeout.ms bounds how long a tick may wait before it counts as failed:
# five minutes (librdkafka's own default) rides out a broker restart, which takes 15-40 s on a
# loaded laptop; 30 s lost every tick queued while the chaos run's broker was away.
PRODUCER_DEFAULTS: dict[str, object] = {
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": 5,
    "batch.size": 512 * 1024,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 200_000,
    "queue.buffering.max.kbytes": 256 * 1024,
    "message.timeout.ms": 300_000,
    "client.id": "tapeflow-feed",
    **CLIENT_CONFIG,
}
MAX_KEPT_ERRORS = 5


@dataclass
class PublishStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few failure reasons
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return max((self.finished or time.monotonic()) - self.started, 1e-9)

    @property
    def pending(self) -> int:
        return self.sent - self.delivered - self.failed

    def summary(self) -> str:
        text = (f"sent {self.sent:,} delivered {self.delivered:,} failed {self.failed:,} in {self.elapsed_s:.1f}s "
                f"({self.delivered / self.elapsed_s:,.0f}/s)")
        if self.pending:
            text += f", {self.pending:,} still unacknowledged"
        return text


class TopicPublisher:
    """Records of one catalog topic to Kafka, with delivery accounting."""

    def __init__(self, bootstrap: str, topic: str = "md.raw", *, prefix: str = "",
                 config: dict[str, object] | None = None):
        from confluent_kafka import Producer

        self.topic = topic
        self.kafka_topic = topic_name(topic, prefix)
        self.bootstrap = bootstrap
        self.config = {**PRODUCER_DEFAULTS, **(config or {}), "bootstrap.servers": bootstrap}
        self.stats = PublishStats()
        self._producer = Producer(self.config)

    def _on_delivery(self, error, message) -> None:
        if error is None:
            self.stats.delivered += 1
            return
        self.stats.failed += 1
        if len(self.stats.errors) < MAX_KEPT_ERRORS:
            key = message.key().decode(errors="replace") if message.key() else ""
            self.stats.errors.append(f"{self.kafka_topic} key {key}: {error.str()}")

    def publish(self, record: Record) -> None:
        message = encode(self.topic, record)
        while True:
            try:
                self._producer.produce(self.kafka_topic, message.value, message.key, headers=list(message.headers),
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                # the local queue is full: wait for deliveries to make room (back-pressure)
                self._producer.poll(0.05)
        self.stats.sent += 1
        self._producer.poll(0)

    def end_tape(self, tape: str, stages: tuple[str, ...] = ()) -> int:
        """The end of a finite tape: one marker on every partition of the topic, after every
        record sent (flushed first), naming the run's ``stages`` for the sink
        (:mod:`topics.end_of_tape`); returns how many. Raises if the broker did not take them."""
        from topics.end_of_tape import FEED, publish_end_of_tape

        self.flush()
        prefix = self.kafka_topic[: len(self.kafka_topic) - len(self.topic)]
        return publish_end_of_tape(self._producer, [self.topic], tape, FEED, stages, prefix)

    @property
    def delivery_timeout_s(self) -> float:
        """How long a record may wait for the broker before it counts as failed."""
        return int(self.config["message.timeout.ms"]) / 1000

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for every sent record's delivery report (by default as long as a record may wait,
        so none is left unanswered); returns how many are still unacknowledged."""
        remaining = self._producer.flush(self.delivery_timeout_s + 5.0 if timeout_s is None else timeout_s)
        self.stats.finished = time.monotonic()
        return remaining


class PublishProgress:
    """A progress line per interval: ticks, ticks/s, delivery errors (a daemon thread)."""

    def __init__(self, stats: PublishStats, interval_s: float = 1.0, stream: TextIO | None = None):
        self.stats = stats
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "PublishProgress":
        def loop() -> None:
            last_sent, last_time = 0, time.monotonic()
            while not self._stop.wait(self.interval_s):
                now, sent = time.monotonic(), self.stats.sent
                rate = (sent - last_sent) / max(now - last_time, 1e-9)
                last_sent, last_time = sent, now
                print(f"[{self.stats.elapsed_s:7.1f}s] ticks {sent:,} ({rate:,.0f}/s) | delivered "
                      f"{self.stats.delivered:,} | delivery errors {self.stats.failed:,}", file=self.stream, flush=True)

        self._thread = threading.Thread(target=loop, name="tapeflow-feed-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def publish_ticks(ticks: Iterable[Record], publisher: TopicPublisher, *, max_ticks: int | None = None,
                  stop: threading.Event | None = None, flush_timeout_s: float | None = None,
                  on_tick: Callable[[int], None] | None = None) -> PublishStats:
    """Send ticks until the feed ends, ``max_ticks`` or ``stop``; then flush, so every sent tick is
    either acknowledged or counted as failed when this returns."""
    stop = stop or threading.Event()
    try:
        for tick in ticks if max_ticks is None or max_ticks > 0 else ():
            if stop.is_set():
                break
            publisher.publish(tick)
            if on_tick is not None:
                on_tick(publisher.stats.sent)
            if max_ticks is not None and publisher.stats.sent >= max_ticks:
                break
    finally:  # a stop (Ctrl-C) waits for the broker less long than a tape's end does
        publisher.flush(flush_timeout_s if flush_timeout_s is not None else 30.0 if stop.is_set() else None)
    return publisher.stats


def undelivered(stats: PublishStats, topic: str) -> str | None:
    """What a publish lost, as one message naming the topic, the count and the first reasons (None:
    every tick sent was acknowledged)."""
    lost = stats.failed + stats.pending
    if not lost:
        return None
    reasons = "; ".join(stats.errors[:3]) or "no delivery report before the flush timed out"
    return (f"{lost:,} of {stats.sent:,} ticks were not delivered to {topic} ({reasons}): the run lacks them; "
            f"check the broker, then replay the tape under a new --run-id")
