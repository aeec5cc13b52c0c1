"""The Kafka edges' decisions that need no broker: where a source partition resumes after consumer
errors, when a silent consumer is replaced, which consumer errors are transient, and that a failed
delivery is never silent."""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from bytewax.connectors.kafka import KafkaError
from confluent_kafka import OFFSET_BEGINNING, KafkaException
from confluent_kafka import KafkaError as ClientError

from flows.kafka_sink import PRODUCER_CONFIG
from flows.kafka_source import (
    CAUGHT_UP_BELOW,
    STALL_AFTER_S,
    STALL_CHECK_S,
    _EndOffsetQuestions,
    _KafkaPartition,
    _WorkerConsumer,
)
from topics.kafka_records import KafkaEndpoint, decoder, transient
from schemas import DeadLetter, RawTick
from tests.unit.kafka_message import PolledMessage as Message


class Broker:
    """The partition's end as the broker reports it, through futures as the admin client's."""

    def __init__(self, high: int = 0):
        self.high = high
        self.away = False
        self.questions = 0

    def ask_end(self) -> Future:
        self.questions += 1
        answer: Future = Future()
        if self.away:
            answer.set_exception(KafkaException(ClientError(ClientError._TRANSPORT)))
        else:
            answer.set_result(SimpleNamespace(offset=self.high))
        return answer


class Consumer:
    """``seen_high``: the end as the consumer's last fetch saw it (a stalled consumer's is stale)."""

    def __init__(self, batches=(), seen_high: int = -1001):
        self.batches = list(batches)
        self.seen_high = seen_high
        self.closed = False
        self.assigned: list[tuple[str, int, int]] = []

    def incremental_assign(self, partitions):
        self.assigned += [(p.topic, p.partition, p.offset) for p in partitions]

    def incremental_unassign(self, partitions):
        gone = {(p.topic, p.partition) for p in partitions}
        self.assigned = [a for a in self.assigned if a[:2] not in gone]

    def consume(self, num_messages, timeout):
        return self.batches.pop(0) if self.batches else []

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        assert cached, "a query through the consumer waits behind its long-poll fetch"
        return 0, self.seen_high

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def partition(consumers: list[Consumer], broker: Broker | None = None, offset: int = OFFSET_BEGINNING, clock=None):
    connected: list[int] = []

    def connect(partitions) -> Consumer:
        connected.append(partitions[0].offset)
        consumer = consumers[len(connected) - 1]
        consumer.incremental_assign(partitions)
        return consumer

    broker = broker or Broker()
    return _KafkaPartition(_WorkerConsumer(connect, 5_000), broker.ask_end, "md.raw", 0, offset, clock or Clock()), connected


def test_source_partition_when_batch_ends_with_a_consumer_error_then_resumes_after_the_last_message():
    source, _ = partition([Consumer([[Message(5), Message(6, ClientError.OFFSET_OUT_OF_RANGE)]])])
    batch = source.next_batch()
    assert [type(item) for item in batch] == [Message, KafkaError]  # the error still reaches the flow
    assert source.snapshot() == 6  # not 7: offset 6 was never read


def test_source_partition_when_only_errors_then_resume_offset_unchanged():
    source, _ = partition([Consumer([[Message(-1001, ClientError._TRANSPORT)]])], offset=42)
    source.next_batch()
    assert source.snapshot() == 42  # not -1000, librdkafka's "stored offset", which jumps to the end


def test_source_partition_when_nothing_read_then_resumes_from_the_start():
    source, _ = partition([Consumer()])
    assert source.snapshot() == OFFSET_BEGINNING


def test_source_partition_when_end_reached_then_batch_delivered_and_next_call_stops():
    source, _ = partition([Consumer([[Message(0), Message(1, ClientError._PARTITION_EOF)]])])
    assert [m.offset() for m in source.next_batch()] == [0]
    with pytest.raises(StopIteration):
        source.next_batch()


def idle_until(source: _KafkaPartition, clock: Clock, seconds: float) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now += STALL_CHECK_S / 4
        assert source.next_batch() == []


def test_source_partition_when_silent_with_messages_waiting_then_a_new_consumer_resumes_at_its_offset():
    clock, broker = Clock(), Broker(high=10)
    stuck, fresh = Consumer([[Message(0), Message(1)]], seen_high=2), Consumer([[Message(2)]])
    source, connected = partition([stuck, fresh], broker, clock=clock)
    assert len(source.next_batch()) == 2
    idle_until(source, clock, STALL_AFTER_S)  # messages 2..9 wait, nothing comes
    assert connected == [OFFSET_BEGINNING]  # a slow fetch is not a stall yet
    while len(connected) == 1 and clock.now < 3 * STALL_AFTER_S:
        clock.now += STALL_CHECK_S / 4
        assert source.next_batch() == []
    assert connected == [OFFSET_BEGINNING, 2] and stuck.closed
    assert [m.offset() for m in source.next_batch()] == [2]
    assert source.snapshot() == 3


def test_source_partition_when_silent_at_the_end_or_broker_away_then_the_consumer_stays():
    clock, broker = Clock(), Broker(high=2)
    at_end = Consumer([[Message(0), Message(1)]], seen_high=2)
    source, connected = partition([at_end], broker, clock=clock)
    source.next_batch()
    idle_until(source, clock, 3 * STALL_AFTER_S)  # a live topic with nothing new
    broker.high = at_end.seen_high = 3
    idle_until(source, clock, 3 * STALL_AFTER_S)  # an offset with no message (a marker), seen by the fetches
    broker.away, broker.high = True, 9
    idle_until(source, clock, 3 * STALL_AFTER_S)  # an outage: the client reconnects by itself
    assert connected == [OFFSET_BEGINNING] and not at_end.closed
    assert broker.questions >= 3 * 3 * STALL_AFTER_S / STALL_CHECK_S - 3  # it did keep asking


def test_source_partition_when_delivering_then_the_broker_is_not_asked():
    clock, broker = Clock(), Broker(high=100)
    busy = Consumer([[Message(i)] for i in range(50)])
    source, _ = partition([busy], broker, clock=clock)
    for _ in range(50):
        clock.now += STALL_CHECK_S
        assert len(source.next_batch()) == 1
    assert broker.questions == 0


def test_source_partition_when_decoding_then_records_dead_letters_and_no_transient_errors():
    tick = RawTick(id="r1", ts_event=1, ts_ingest=1, source="test", symbol="SYN0", seq=1, payload_format="tapeflow.v1",
                   payload={"type": "trade"})
    batch = [Message(0, value=tick.to_json(), topic="p.md.raw"), Message(1, value=b"not json", topic="p.md.raw"),
             Message(2, ClientError._TRANSPORT), Message(2, ClientError.TOPIC_AUTHORIZATION_FAILED)]
    decode = decoder(KafkaEndpoint(("127.0.0.1:1",), "p."), "normalize", with_topic=True)
    source = _KafkaPartition(_WorkerConsumer(lambda at: Consumer([batch]), 5_000), Broker().ask_end, "p.md.raw", 0, 0,
                             Clock(), decode=decode)
    out = source.next_batch()
    assert out[0] == ("md.raw", tick)
    assert [(t, type(r), r.reason) for t, r in out[1:]] == [("dlq", DeadLetter, "not_json"),
                                                             ("dlq", DeadLetter, "consumer_error")]
    assert out[1][1].id == "dlq:normalize:md.raw:0:1" and out[1][1].payload == "not json"
    assert source.snapshot() == 2


@pytest.mark.parametrize("code", [ClientError._TRANSPORT, ClientError._ALL_BROKERS_DOWN,
                                  ClientError.NOT_LEADER_FOR_PARTITION, ClientError.LEADER_NOT_AVAILABLE])
def test_consumer_error_when_the_broker_is_out_of_reach_then_transient(code):
    assert transient(ClientError(code))


@pytest.mark.parametrize("code", [ClientError.TOPIC_AUTHORIZATION_FAILED, ClientError.OFFSET_OUT_OF_RANGE,
                                  ClientError._MSG_TIMED_OUT])
def test_consumer_error_when_it_says_something_about_the_data_then_not_transient(code):
    assert not transient(ClientError(code))


def test_producer_delivery_report_when_failed_then_raises_and_when_delivered_then_quiet():
    report = PRODUCER_CONFIG["on_delivery"]
    report(None, object())
    with pytest.raises(KafkaException):
        report(ClientError(ClientError._MSG_TIMED_OUT), object())


def shared_partitions(consumers: list[Consumer], offsets=(OFFSET_BEGINNING, 7), clock=None, broker=None):
    """Two md.raw partitions on one worker consumer; ``connected``: each new consumer's assignment."""
    connected: list[list[tuple[str, int, int]]] = []

    def connect(partitions) -> Consumer:
        consumer = consumers[len(connected)]
        consumer.incremental_assign(partitions)
        connected.append(list(consumer.assigned))
        return consumer

    worker = _WorkerConsumer(connect, 5_000)
    broker = broker or Broker()
    parts = [_KafkaPartition(worker, broker.ask_end, "md.raw", i, at, clock or Clock()) for i, at in enumerate(offsets)]
    return parts, connected


def test_worker_partitions_when_one_poll_fetches_both_then_each_delivers_its_own_in_order():
    fetch = [Message(0, partition=0), Message(7, partition=1), Message(1, partition=0), Message(8, partition=1)]
    consumer = Consumer([fetch])
    (first, second), connected = shared_partitions([consumer])
    assert connected == [[("md.raw", 0, OFFSET_BEGINNING)]] and consumer.assigned[1] == ("md.raw", 1, 7)
    assert [m.offset() for m in first.next_batch()] == [0, 1]
    assert [m.offset() for m in second.next_batch()] == [7, 8]  # queued by the first one's poll
    assert (first.snapshot(), second.snapshot()) == (2, 9)
    assert first.next_batch() == [] and second.next_batch() == []


def test_worker_partitions_when_one_stalls_then_a_new_consumer_resumes_each_at_its_delivered_offset():
    clock, broker = Clock(), Broker(high=10)
    stuck = Consumer([[Message(0, partition=0), Message(7, partition=1), Message(8, partition=1)]], seen_high=1)
    fresh = Consumer([[Message(1, partition=0), Message(8, partition=1)]])
    (first, second), connected = shared_partitions([stuck, fresh], clock=clock, broker=broker)
    assert [m.offset() for m in first.next_batch()] == [0]
    assert [m.offset() for m in second.next_batch()][:1] == [7]
    while len(connected) == 1 and clock.now < 4 * STALL_AFTER_S:
        clock.now += STALL_CHECK_S / 4
        assert first.next_batch() == []
    assert stuck.closed and connected[1] == [("md.raw", 0, 1), ("md.raw", 1, 9)]
    assert [m.offset() for m in first.next_batch()] == [1]


def test_worker_partitions_when_one_ends_then_the_other_keeps_the_consumer():
    consumer = Consumer([[Message(0, partition=0), Message(1, ClientError._PARTITION_EOF, partition=0),
                          Message(7, partition=1)]])
    (first, second), _ = shared_partitions([consumer])
    assert [m.offset() for m in first.next_batch()] == [0]
    with pytest.raises(StopIteration):
        first.next_batch()
    first.close()
    assert consumer.assigned == [("md.raw", 1, 7)] and not consumer.closed
    assert [m.offset() for m in second.next_batch()] == [7]
    second.close()
    assert consumer.closed


def test_source_when_partitions_built_on_two_worker_threads_then_one_consumer_per_worker(monkeypatch):
    import threading

    from flows import kafka_source

    made: list = []
    monkeypatch.setattr(kafka_source, "Consumer", lambda config: made.append(Consumer()) or made[-1])
    source = kafka_source._KafkaSource(["127.0.0.1:1"], ["md.raw"], True, OFFSET_BEGINNING, 5_000)
    built_here = [source.build_part("s", f"{i}-md.raw", None) for i in range(2)]
    there: list = []
    worker = threading.Thread(target=lambda: there.extend(source.build_part("s", f"{i}-md.raw", 3) for i in (2, 3)))
    worker.start()
    worker.join()
    assert len(made) == 2
    assert made[0].assigned == [("md.raw", 0, OFFSET_BEGINNING), ("md.raw", 1, OFFSET_BEGINNING)]
    assert made[1].assigned == [("md.raw", 2, 3), ("md.raw", 3, 3)]
    assert [p.snapshot() for p in built_here + there] == [OFFSET_BEGINNING, OFFSET_BEGINNING, 3, 3]


def test_source_partition_when_caught_up_then_paused_and_when_behind_or_unpaused_then_asked_again_at_once():
    from datetime import datetime, timedelta, timezone

    backlog = [Message(i) for i in range(CAUGHT_UP_BELOW)]
    consumer = Consumer([[Message(0), Message(1)], backlog, []])
    paused = _KafkaPartition(_WorkerConsumer(lambda at: consumer, 5_000), Broker().ask_end, "md.raw", 0, 0,
                             Clock(), pause_s=0.002)
    assert paused.next_awake() is None
    before = datetime.now(timezone.utc)
    assert len(paused.next_batch()) == 2  # a live tape's few ticks: the next batch waits
    assert before + timedelta(seconds=0.002) <= paused.next_awake() <= datetime.now(timezone.utc) + timedelta(seconds=0.002)
    assert len(paused.next_batch()) == CAUGHT_UP_BELOW  # a backlog: no pause
    assert paused.next_awake() is None
    assert paused.next_batch() == [] and paused.next_awake() is not None
    unpaused, _ = partition([Consumer([[Message(0)], []])])
    unpaused.next_batch()
    unpaused.next_batch()
    assert unpaused.next_awake() is None  # Bytewax's own cadence


class Admin:
    """list_offsets as the admin client's: a future per partition asked, each request recorded."""

    def __init__(self, ends: dict[tuple[str, int], int]):
        self.ends = ends
        self.requests: list[list[tuple[str, int]]] = []

    def list_offsets(self, asked, request_timeout):
        self.requests.append(sorted((tp.topic, tp.partition) for tp in asked))
        answers = {}
        for tp in asked:
            answers[tp] = Future()
            answers[tp].set_result(SimpleNamespace(offset=self.ends[(tp.topic, tp.partition)]))
        return answers


def test_end_offset_questions_when_partitions_ask_together_then_one_request_answers_all_until_it_ages():
    admin = Admin({("md.raw", 0): 10, ("md.raw", 1): 20, ("md.trades", 0): 30})
    clock = Clock()
    questions = _EndOffsetQuestions(lambda: admin, lambda: list(admin.ends), clock)
    answers = [questions.ask(slot).result().offset for slot in admin.ends]
    assert answers == [10, 20, 30]
    assert admin.requests == [[("md.raw", 0), ("md.raw", 1), ("md.trades", 0)]]
    clock.now += STALL_CHECK_S / 2  # the next round of checks asks the broker again, once
    admin.ends[("md.raw", 0)] = 11
    assert [questions.ask(slot).result().offset for slot in admin.ends] == [11, 20, 30]
    assert len(admin.requests) == 2


def test_worker_consumer_when_a_message_of_an_ended_partition_comes_then_it_is_dropped_not_delivered_elsewhere():
    consumer = Consumer([[Message(3, partition=9), Message(0, partition=0)]])
    (first, _), _ = shared_partitions([consumer])
    assert [m.offset() for m in first.next_batch()] == [0] and first.snapshot() == 1


class Producer:
    """confluent-kafka's Producer as the producing step uses it; ``full`` BufferErrors first."""

    def __init__(self, full: int = 0):
        self.full = full
        self.sent: list[tuple] = []
        self.flushes = 0
        self.polls = 0

    def produce(self, topic, value, key, headers=None):
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.sent.append((topic, key, value, headers))

    def poll(self, timeout):
        self.polls += 1

    def flush(self, timeout=None):
        self.flushes += 1


def test_producing_step_when_batches_arrive_then_sent_without_waiting_and_flushed_only_at_the_snapshot():
    from flows.kafka_sink import _Producing

    producer = Producer(full=2)
    step = _Producing(producer)
    items = [("p.md.trades", b"SYN0", b"{}", [("schema", b"v1")]), ("p.md.quotes", b"SYN1", b"{}", [])]
    assert step.on_batch(items) == ([], False)  # nothing downstream; the step keeps its producer
    assert producer.sent == items  # in order, the full queue waited out
    assert producer.flushes == 0  # no broker round trip per batch
    assert producer.polls >= 3  # two waits on the full queue, then the delivery reports
    assert step.snapshot() is None and producer.flushes == 1  # before the epoch's offsets commit
    step.on_eof()
    assert producer.flushes == 2


def test_source_partition_when_columnar_then_tick_batches_in_offset_order_with_the_rest_in_place():
    from schemas.columns import RawTickBatch
    from topics.serde import encode

    def tick(seq: int, payload_format: str = "tapeflow.v1") -> RawTick:
        payload = {"type": "trade", "ts": 10 + seq, "price": 100.0 + seq, "size": 5.0, "side": "buy", "trade_id": str(seq)}
        return RawTick(id=f"feed:{seq}", ts_event=10 + seq, ts_ingest=99, source="feed", symbol="SYN0", seq=seq,
                       payload_format=payload_format, payload=payload)

    ticks = [tick(0), tick(1), tick(2, payload_format="alpaca.v2"), tick(3), tick(4)]
    values = [encode("md.raw", t).value for t in ticks]
    values.insert(3, b"not json")
    batch = [Message(i, value=v, topic="p.md.raw") for i, v in enumerate(values)]
    batch.append(Message(6, ClientError.TOPIC_AUTHORIZATION_FAILED))
    decode = decoder(KafkaEndpoint(("127.0.0.1:1",), "p."), "normalize", with_topic=True, columnar=True)
    source = _KafkaPartition(_WorkerConsumer(lambda at: Consumer([batch]), 5_000), Broker().ask_end, "p.md.raw", 0, 0,
                             Clock(), decode=decode)
    out = source.next_batch()
    assert [(topic, type(item).__name__) for topic, item in out] == [
        ("md.raw", "RawTickBatch"), ("md.raw", "RawTick"), ("dlq", "DeadLetter"), ("md.raw", "RawTickBatch"),
        ("dlq", "DeadLetter")]
    first, other_format, dead, second, consumer_error = (item for _, item in out)
    assert type(first) is RawTickBatch and first.to_records() == ticks[:2] and second.to_records() == ticks[3:]
    assert other_format == ticks[2]  # decoded as a record, in its place
    assert (dead.reason, dead.id, dead.payload) == ("not_json", "dlq:normalize:md.raw:0:3", "not json")
    assert consumer_error.reason == "consumer_error"
    assert source.snapshot() == 6


def test_decoder_when_columnar_then_trades_in_one_batch_and_other_topics_as_records():
    from schemas import Signal, Trade
    from schemas.columns import TickBatch
    from tests.unit.schemas.test_records import every_record
    from topics.serde import encode

    trade = next(r for r in every_record() if type(r) is Trade)
    signal = next(r for r in every_record() if type(r) is Signal)
    decode = decoder(KafkaEndpoint(("127.0.0.1:1",)), "trading", with_topic=False, columnar=True)
    trades = decode([Message(i, value=encode("md.trades", trade).value, topic="md.trades") for i in range(3)], [])
    assert [type(t) for t in trades] == [TickBatch] and trades[0].to_records() == [trade] * 3
    assert decode([Message(0, value=encode("signals", signal).value, topic="signals")], []) == [signal]


def test_producing_step_items_when_a_batch_is_produced_then_the_serde_messages_of_its_rows_in_order():
    from flows.kafka_sink import PRODUCER_KEY, TOPIC_OF_TABLE, to_messages
    from schemas import Quote, Trade
    from schemas.columns import RawTickBatch, TickBatch
    from tests.unit.schemas.test_records import every_record
    from topics.serde import encode

    records = every_record()
    trade, quote, raw = (next(r for r in records if type(r) is kind) for kind in (Trade, Quote, RawTick))
    ticks = [trade, quote, quote.model_copy(update={"symbol": "MSFT"}), trade]
    full_name = {name: f"p.{topic}" for table, topic in TOPIC_OF_TABLE.items() for name in (table, topic)}
    items = to_messages([("md_trades", TickBatch.from_records(ticks)), ("md_raw", RawTickBatch.from_records([raw])),
                         ("md_quotes", quote)], full_name)
    expected = [encode(t, r) for t, r in [("md.trades", trade), ("md.quotes", quote), ("md.quotes", ticks[2]),
                                          ("md.trades", trade), ("md.raw", raw), ("md.quotes", quote)]]
    assert items == [(PRODUCER_KEY, (f"p.{m.topic}", m.key, m.value, list(m.headers))) for m in expected]


def _comparable(item):
    topic, record = item
    if type(record) is DeadLetter:  # its ts_ingest is the wall clock
        return topic, record.model_dump(exclude={"ts_ingest", "ts_event"})
    return topic, record.model_dump_json()


def test_decoder_when_columnar_then_its_output_flattened_is_the_per_message_decoders():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tests.unit.topics.test_column_codec import flat, polls

    endpoint = KafkaEndpoint(("127.0.0.1:1",), "p.")

    @settings(max_examples=60, deadline=None)
    @given(topic=st.sampled_from(["md.raw", "md.trades", "md.quotes"]), data=st.data())
    def check(topic, data):
        messages = [Message(i, value=v, topic=f"p.{topic}") for i, v in enumerate(data.draw(polls(topic)))]
        columnar = decoder(endpoint, "normalize", with_topic=True, columnar=True)(messages, [])
        one_by_one = decoder(endpoint, "normalize", with_topic=True)(messages, [])
        flattened = [(t, r) for t, item in columnar for r in flat([item])]
        assert [_comparable(x) for x in flattened] == [_comparable(x) for x in one_by_one]

    check()


def test_decoder_when_columnar_and_a_batch_is_below_columnar_min_then_records():
    from schemas import Trade
    from schemas.columns import TickBatch
    from tests.unit.schemas.test_records import every_record
    from topics.serde import encode

    trade = next(r for r in every_record() if type(r) is Trade)
    decode = decoder(KafkaEndpoint(("127.0.0.1:1",)), "bars", with_topic=False, columnar=True, columnar_min=3)
    two = [Message(i, value=encode("md.trades", trade).value, topic="md.trades") for i in range(2)]
    assert decode(two, []) == [trade, trade]
    assert [type(item) for item in decode(two + two[:1], [])] == [TickBatch]
