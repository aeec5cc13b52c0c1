"""The warehouse's threads run at a lower OS priority than the dataflow; nobody else's do."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sinks.background import BackgroundWriter
from sinks.thread_priority import WAREHOUSE_NICE_INCREMENT, WarehouseThreads
from sinks.writer import BatchingWriter
from tests.unit.sinks.records import one_of_each

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                                reason="per-thread priorities are read from /proc/self/task (Linux)")


def nice_of(native_id: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, native_id)


def expected_nice() -> int:
    return min(nice_of(os.getpid()) + WAREHOUSE_NICE_INCREMENT, 19)


class NamedThread:
    """A thread that names itself ``name`` in the OS (as ClickHouse's pool threads do) and waits."""

    def __init__(self, name: str):
        self.ready, self.done = threading.Event(), threading.Event()
        self.native_id = 0
        self._thread = threading.Thread(target=self._run, args=(name,), daemon=True)
        self._thread.start()
        assert self.ready.wait(10)

    def _run(self, name: str) -> None:
        self.native_id = threading.get_native_id()
        Path(f"/proc/self/task/{self.native_id}/comm").write_text(name)
        self.ready.set()
        self.done.wait(30)

    def stop(self) -> None:
        self.done.set()
        self._thread.join(10)


def test_lower_new_when_clickhouse_pool_threads_run_then_only_those_are_lowered():
    merge, kafka = NamedThread("MergeMutate"), NamedThread("rdk:broker1")
    try:
        threads = WarehouseThreads()
        threads.lower_new()
        assert nice_of(merge.native_id) == expected_nice()
        assert nice_of(kafka.native_id) == nice_of(os.getpid())  # Kafka's threads carry the tape
        assert nice_of(threading.get_native_id()) == nice_of(os.getpid())  # nor the caller
        assert "MergeMutate" in threads.lowered and "rdk:broker1" not in threads.lowered
    finally:
        merge.stop()
        kafka.stop()


def test_lower_new_when_a_pool_thread_starts_later_then_the_next_call_lowers_it():
    threads = WarehouseThreads()
    threads.lower_new()
    late = NamedThread("BgSchPool")
    try:
        assert nice_of(late.native_id) == nice_of(os.getpid())
        threads.lower_new()
        assert nice_of(late.native_id) == expected_nice()
    finally:
        late.stop()


class NullWarehouse:
    def __init__(self):
        self.nice_while_inserting: list[int] = []

    def insert_arrow(self, table, arrow_table, *, dedup_token=None):
        self.nice_while_inserting.append(nice_of(threading.get_native_id()))
        return arrow_table.num_rows


def niceness_while_inserting(**options) -> set[int]:
    warehouse = NullWarehouse()
    background = BackgroundWriter(BatchingWriter(warehouse, "run-1", max_rows=1000, max_age_s=3600.0), **options)
    try:
        for table, record in one_of_each().items():
            background.add(table, record)
        background.flush()
    finally:
        background.close()
    assert warehouse.nice_while_inserting
    return set(warehouse.nice_while_inserting)


def test_background_writer_when_below_the_tape_then_its_thread_runs_lowered_and_the_caller_does_not():
    assert niceness_while_inserting(below_the_tape=True) == {expected_nice()}
    assert nice_of(threading.get_native_id()) == nice_of(os.getpid())


def test_background_writer_by_default_keeps_its_priority_as_the_split_sink_stage_does():
    assert niceness_while_inserting() == {nice_of(os.getpid())}


def test_warehouse_sink_when_asked_to_run_below_the_tape_then_its_writer_does():
    from flows.sink import WarehouseSink

    writer = BatchingWriter(NullWarehouse(), "run-1", max_rows=1000, max_age_s=3600.0)
    assert WarehouseSink(writer, below_the_tape=True)._writer.below_the_tape
    assert not WarehouseSink(writer)._writer.below_the_tape
