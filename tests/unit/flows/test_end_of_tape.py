"""End-of-tape markers at a stage's source, without a broker: a stage's partitions end at their own
markers, its control once every tape partition has; the sink reads on until the run's tape is
complete; a restart still knows where its tape ended."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING

from flows.kafka_source import _KafkaPartition, _WorkerConsumer
from flows.split import tape_ends
from schemas import DeadLetter, Trade
from tests.unit.flows.test_kafka_source import Broker, Clock, Consumer
from tests.unit.kafka_message import PolledMessage as Message
from topics.end_of_tape import END_OF_TAPE_KEY, EndOfTape, RunTapeEnds, StageTapeEnds, read_marker
from topics.kafka_records import KafkaEndpoint, MarkedBatch, decoder
from topics.serde import encode

PREFIX = "p."
ENDPOINT = KafkaEndpoint(("127.0.0.1:1",), PREFIX)


def trade(seq: int, symbol: str = "SYN0") -> Trade:
    return Trade(id=f"t{seq}", ts_event=1_000_000_000 * (seq + 1), ts_ingest=1, ts_tick_ingest=1, source="test",
                 symbol=symbol, price=100.0, size=1.0, aggressor="buy", trade_id=str(seq))


def record_message(topic: str, partition: int, offset: int, record) -> Message:
    encoded = encode(topic, record)
    return Message(topic=PREFIX + topic, partition=partition, offset=offset, key=encoded.key, value=encoded.value,
                   headers=list(encoded.headers))


def marker_message(topic: str, partition: int, offset: int, partitions: int, stage: str = "market",
                   topics: tuple[str, ...] = ("md.trades",), stages=("market", "trading", "sink")) -> Message:
    marker = EndOfTape("run-1", stage, topic, partition, partitions, topics, stages)
    return Message(topic=PREFIX + topic, partition=partition, offset=offset, key=END_OF_TAPE_KEY,
                   value=marker.value(), headers=marker.headers())


def stage_partitions(tape, slots, batches, resume=None, broker=None):
    """Partitions of one worker sharing a consumer whose polls return ``batches``; ``resume``:
    snapshots per slot."""
    consumer = Consumer(batches)
    worker = _WorkerConsumer(lambda partitions: (consumer.incremental_assign(partitions), consumer)[1], 5_000)
    decode = decoder(ENDPOINT, "trading", with_topic=False, columnar=False)
    parts = {}
    for topic, partition in slots:
        state = (resume or {}).get((topic, partition))
        offset, markers = (state if isinstance(state, tuple) else (state, ())) if state is not None else (
            OFFSET_BEGINNING, ())
        parts[(topic, partition)] = _KafkaPartition(worker, (broker or Broker()).ask_end, PREFIX + topic, partition,
                                                    offset, Clock(), decode=decode, tape=tape, markers=markers)
    return parts


def drain(part: _KafkaPartition) -> list:
    try:
        return part.next_batch()
    except StopIteration:
        return ["<ended>"]


TAPE_SLOTS = [("md.trades", 0), ("md.trades", 1), ("md.trades", 2)]


def test_stage_when_markers_on_2_of_3_partitions_then_not_ended_and_the_3rd_ends_the_tape_and_control():
    tape = tape_ends("trading")
    tape.prefix = PREFIX
    parts = stage_partitions(tape, TAPE_SLOTS + [("control", 0)], [
        [record_message("md.trades", 0, 0, trade(0)), marker_message("md.trades", 0, 1, 3),
         record_message("md.trades", 1, 0, trade(1)), marker_message("md.trades", 1, 1, 3)],
    ])
    assert [type(r) for r in drain(parts[("md.trades", 0)])] == [Trade]  # the marker is no record
    assert [type(r) for r in drain(parts[("md.trades", 1)])] == [Trade]
    assert not tape.complete
    assert drain(parts[("control", 0)]) == []  # control reads on: the tape has not ended
    assert drain(parts[("md.trades", 0)]) == ["<ended>"]
    assert parts[("md.trades", 0)].snapshot()[0] == 2  # past its marker: lag 0

    parts[("md.trades", 2)]._consumer._consumer.batches.append([marker_message("md.trades", 2, 0, 3)])
    assert drain(parts[("md.trades", 2)]) == []
    assert tape.complete and tape.tape_id() == "run-1" and tape.stages() == ("market", "trading", "sink")
    assert drain(parts[("control", 0)]) == ["<ended>"]  # not tape: it ends with it


def test_stage_when_messages_follow_the_marker_then_not_delivered_and_the_resume_offset_is_past_the_marker():
    tape = StageTapeEnds(prefix=PREFIX)
    parts = stage_partitions(tape, [("md.trades", 0)], [[
        record_message("md.trades", 0, 0, trade(0)), marker_message("md.trades", 0, 1, 1),
        record_message("md.trades", 0, 2, trade(2)),  # a later tape's: not this stage's
    ]])
    batch = drain(parts[("md.trades", 0)])
    assert [r.id for r in batch] == ["t0"] and type(batch) is not MarkedBatch
    offset, markers = parts[("md.trades", 0)].snapshot()
    assert offset == 2 and [m.stage for m in markers] == ["market"]


def test_stage_when_restarted_after_some_markers_then_those_partitions_end_at_once_and_the_rest_still_ends_it():
    tape = StageTapeEnds(prefix=PREFIX)
    first = stage_partitions(tape, TAPE_SLOTS, [[marker_message("md.trades", 0, 0, 3),
                                                  marker_message("md.trades", 1, 0, 3)]])
    drain(first[("md.trades", 0)]), drain(first[("md.trades", 1)])
    snapshots = {slot: part.snapshot() for slot, part in first.items()}  # then the process dies

    resumed_tape = StageTapeEnds(prefix=PREFIX)
    resumed = stage_partitions(resumed_tape, TAPE_SLOTS, [[marker_message("md.trades", 2, 0, 3)]], resume=snapshots)
    assert drain(resumed[("md.trades", 0)]) == ["<ended>"] and drain(resumed[("md.trades", 1)]) == ["<ended>"]
    assert not resumed_tape.complete
    drain(resumed[("md.trades", 2)])
    assert resumed_tape.complete


def test_control_when_the_tape_ends_with_a_command_not_yet_read_then_it_is_read_before_control_ends():
    from schemas import ControlCommand

    tape = tape_ends("trading")
    tape.prefix = PREFIX
    command = ControlCommand(id="c", ts_event=1, ts_ingest=1, kind="kill_switch", value=1.0)
    broker = Broker(high=1)  # control's end when the tape ended: one command
    parts = stage_partitions(tape, [("md.trades", 0), ("control", 0)], [
        [marker_message("md.trades", 0, 0, 1)], [record_message("control", 0, 0, command)]], broker=broker)
    drain(parts[("md.trades", 0)])
    assert tape.complete
    assert [type(r) for r in drain(parts[("control", 0)])] == [ControlCommand]
    assert drain(parts[("control", 0)]) == ["<ended>"]


def test_risk_when_exec_reports_never_marked_then_its_tape_still_ends():
    tape = tape_ends("risk")
    tape.prefix = PREFIX
    parts = stage_partitions(tape, [("signals", 0), ("exec.reports", 0)], [[marker_message("signals", 0, 0, 1)]])
    drain(parts[("signals", 0)])
    assert tape.complete  # exec.reports is written downstream of risk: waiting on it would deadlock
    assert drain(parts[("exec.reports", 0)]) == ["<ended>"]


def test_stage_without_a_tape_when_a_marker_comes_then_skipped_and_reads_on():
    parts = stage_partitions(None, [("md.trades", 0)], [[marker_message("md.trades", 0, 0, 1),
                                                         record_message("md.trades", 0, 1, trade(1))]])
    assert [r.id for r in drain(parts[("md.trades", 0)])] == ["t1"]
    assert parts[("md.trades", 0)].snapshot() == 2


def test_sink_when_dlq_has_some_stages_markers_then_reads_on_until_every_stage_marked_every_partition():
    run = RunTapeEnds()
    stages = ("market", "trading", "sink")
    feed = [marker_message("md.raw", p, 0, 2, stage="feed", topics=("md.raw",), stages=stages) for p in range(2)]
    market = [marker_message("md.trades", 0, 0, 1, topics=("md.trades", "dlq")),
              marker_message("dlq", 0, 0, 1, topics=("md.trades", "dlq"))]
    trading_dlq = marker_message("dlq", 0, 2, 1, stage="trading", topics=("dlq",))
    dead = DeadLetter(id="d", ts_event=1, ts_ingest=1, source_topic="md.trades", stage="trading", reason="late",
                      payload="{}")
    parts = stage_partitions(run, [("md.raw", 0), ("md.raw", 1), ("md.trades", 0), ("dlq", 0)], [
        [*feed, *market, record_message("dlq", 0, 1, dead)], [trading_dlq]])
    for slot in [("md.raw", 0), ("md.raw", 1), ("md.trades", 0)]:
        assert drain(parts[slot]) == []
    assert [type(r) for r in drain(parts[("dlq", 0)])] == [DeadLetter]  # after market's marker, before trading's
    assert not run.complete
    assert drain(parts[("dlq", 0)]) == []
    assert run.complete and run.tape == "run-1"
    offset, markers = parts[("dlq", 0)].snapshot()
    assert offset == 3 and [m.stage for m in markers] == ["market", "trading"]
    assert all(drain(part) == ["<ended>"] for part in parts.values())

    resumed_run = RunTapeEnds()  # a sink restarted now still knows the tape is complete
    stage_partitions(resumed_run, list(parts), [], resume={slot: part.snapshot() for slot, part in parts.items()})
    assert resumed_run.complete


def test_decoder_when_a_marker_comes_then_not_a_dead_letter_and_a_header_without_a_marker_is_one():
    decode = decoder(ENDPOINT, "bars", with_topic=True, columnar=True)
    batch = decode([record_message("md.trades", 0, 0, trade(0)), marker_message("md.trades", 0, 1, 1)], [])
    assert type(batch) is MarkedBatch and [m.offset for m in batch.markers] == [1]
    assert [topic for topic, _ in batch] == ["md.trades"]
    bogus = Message(topic=PREFIX + "md.trades", partition=0, offset=2, key=b"x", value=b"[1]",
                    headers=[("tapeflow-end-of-tape", b"run-1")])
    assert read_marker("md.trades", bogus.headers(), bogus.value()) is None
    out = decode([bogus], [])
    assert type(out) is not MarkedBatch and out[0][0] == "dlq" and out[0][1].reason == "wrong_schema"


@pytest.mark.parametrize("stage", ["market", "signals", "trading", "execution", "pnl", "sink"])
def test_tape_ends_when_stage_is_not_risk_then_only_control_is_not_tape(stage):
    tape = tape_ends(stage)
    if stage == "sink":
        assert type(tape) is RunTapeEnds
    else:
        assert not tape.is_tape("control") and tape.is_tape("exec.reports") and tape.is_tape("md.trades")


def test_run_tape_when_an_earlier_tapes_markers_are_on_the_topics_then_only_this_tapes_count():
    run = RunTapeEnds()
    stages = ("market", "sink")
    run.on_marker(EndOfTape("old", "market", "md.trades", 0, 1, ("md.trades",), stages))
    run.on_marker(EndOfTape("new", "feed", "md.raw", 0, 1, ("md.raw",), stages))
    assert not run.complete  # market's marker is the old tape's
    run.on_marker(EndOfTape("new", "market", "md.trades", 0, 1, ("md.trades",), stages))
    assert run.complete and run.tape == "new"


def test_stage_when_a_partition_ends_at_its_marker_then_it_stops_fetching_so_what_follows_cannot_starve_control():
    """A restarted upstream stage writes its records and markers again after the first markers: a
    partition that has ended must not keep fetching them into a queue nobody takes (the worker's
    buffer would fill and control, which must be read to its end, would never be polled again)."""
    tape = StageTapeEnds(prefix=PREFIX)
    parts = stage_partitions(tape, [("md.trades", 0), ("control", 0)], [[
        record_message("md.trades", 0, 0, trade(0)), marker_message("md.trades", 0, 1, 1),
        record_message("md.trades", 0, 2, trade(0)), marker_message("md.trades", 0, 3, 1),  # written again
    ]])
    worker = parts[("md.trades", 0)]._consumer
    assert [r.id for r in drain(parts[("md.trades", 0)])] == ["t0"]
    assert (PREFIX + "md.trades", 0) not in worker.slots()  # unassigned at its marker
    assert worker._buffered == 0  # nothing of it waits in a queue
    parts[("md.trades", 0)].close()  # the dataflow's own close later is harmless
    assert (PREFIX + "control", 0) in worker.slots()


def test_run_tape_when_the_sink_reads_no_md_raw_then_the_stages_markers_name_the_run_and_end_it():
    run = tape_ends("sink", store_raw=False)  # --no-raw: the feed's markers on md.raw are never read
    stages = ("market", "sink")
    run.on_marker(EndOfTape("old", "market", "md.trades", 0, 1, ("md.trades", "dlq"), stages))
    run.on_marker(EndOfTape("new", "market", "md.trades", 0, 1, ("md.trades", "dlq"), stages))
    assert not run.complete  # neither tape has market's dlq marker yet
    run.on_marker(EndOfTape("new", "market", "dlq", 0, 1, ("md.trades", "dlq"), stages))
    assert run.complete and run.tape == "new" and run.stages == stages
    assert not tape_ends("sink").complete  # a sink reading md.raw waits for the feed's markers


def test_run_tape_when_the_sink_reads_no_md_raw_then_a_stage_not_yet_marked_holds_the_end():
    run = tape_ends("sink", store_raw=False)
    stages = ("market", "signals", "sink")
    run.on_marker(EndOfTape("r", "market", "md.bars", 0, 1, ("md.bars",), stages))
    assert not run.complete
    run.on_marker(EndOfTape("r", "signals", "signals", 0, 1, ("signals",), stages))
    assert run.complete


class RecordingProducer:
    """A producer's face for publish_end_of_tape: every topic has two partitions; what is produced
    and each flush are recorded in order."""

    def __init__(self):
        self.events: list[tuple] = []

    def list_topics(self, topic, timeout=None):
        from types import SimpleNamespace

        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions={0: None, 1: None})})

    def produce(self, topic, value=None, key=None, partition=-1, headers=None, on_delivery=None):
        self.events.append(("produce", topic, partition, key))

    def flush(self, timeout=None):
        self.events.append(("flush",))
        return 0

    def poll(self, timeout=None):
        return 0


def ended_tape() -> StageTapeEnds:
    tape = tape_ends("signals")
    tape.add((PREFIX + "features", 0))
    return tape


def test_stage_producer_when_input_ends_at_the_tape_end_then_delivers_first_then_marks_each_output_once():
    from flows.kafka_sink import _Producing
    from flows.split import MARKS, SplitConfig, _mark_outputs

    tape = ended_tape()
    cfg = SplitConfig(endpoint=ENDPOINT, tape=tape)
    producer = RecordingProducer()
    producing = _Producing(producer, _mark_outputs("signals", cfg))

    producing.on_eof()  # input ended without the tape's end (a stop): delivered, nothing marked
    assert producer.events == [("flush",)] and tape.marked is None

    tape.on_marker((PREFIX + "features", 0), EndOfTape("run-1", "market", "features", 0, 1, stages=("market",)))
    producer.events.clear()
    producing.on_eof()
    assert producer.events[0] == ("flush",), "what the cores flushed goes out before the markers"
    marked = [(topic, partition) for kind, topic, partition, key in producer.events[1:-1] if kind == "produce"]
    assert marked == [(PREFIX + topic, p) for topic in MARKS["signals"] for p in (0, 1)]
    assert producer.events[-1] == ("flush",) and tape.marked == len(marked)

    producing.on_eof()  # a second end of input (a resumed dataflow) marks nothing more
    assert len([e for e in producer.events if e[0] == "produce"]) == len(marked)


def test_pass_end_of_tape_when_the_producer_already_marked_then_reports_it_without_a_second_producer(monkeypatch):
    import confluent_kafka

    from flows.split import SplitConfig, pass_end_of_tape

    tape = ended_tape()
    tape.on_marker((PREFIX + "features", 0), EndOfTape("run-1", "market", "features", 0, 1, stages=("market",)))
    tape.marked = 4
    monkeypatch.setattr(confluent_kafka, "Producer", lambda *a, **k: pytest.fail("marked twice"))
    assert pass_end_of_tape("signals", SplitConfig(endpoint=ENDPOINT, tape=tape)) == (
        "end of tape run-1: flushed, 4 markers on signals, dlq")


def test_pass_end_of_tape_when_the_producing_step_never_held_a_message_then_marks_through_a_new_producer(
        monkeypatch):
    import confluent_kafka

    from flows.split import MARKS, SplitConfig, pass_end_of_tape

    tape = ended_tape()
    tape.on_marker((PREFIX + "features", 0), EndOfTape("run-1", "market", "features", 0, 1, stages=("market",)))
    made: list[RecordingProducer] = []
    monkeypatch.setattr(confluent_kafka, "Producer", lambda config: made.append(RecordingProducer()) or made[-1])
    report = pass_end_of_tape("signals", SplitConfig(endpoint=ENDPOINT, tape=tape))

    (producer,) = made
    marked = [(event[1], event[2]) for event in producer.events if event[0] == "produce"]
    assert marked == [(PREFIX + topic, p) for topic in MARKS["signals"] for p in (0, 1)]
    assert tape.marked == len(marked) and report == f"end of tape run-1: flushed, {len(marked)} markers on signals, dlq"
    assert pass_end_of_tape("signals", SplitConfig(endpoint=ENDPOINT, tape=tape)) == report and len(made) == 1, (
        "a second report makes no second producer")
