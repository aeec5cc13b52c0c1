"""Snapshots of a flow run without recovery: its cores return none, its sink does not wait; with
recovery both are taken as before, and a resumed run continues from them."""

from __future__ import annotations

import pickle

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource

from flows.pipeline import run_flow
from flows.stateful import CoreLogic, flow_recovery, stateful_core


class Counter:
    def __init__(self) -> None:
        self.seen = 0


def count(core: Counter, value: int) -> list[tuple[int, int]]:
    core.seen += 1
    return [(value, core.seen)]


def counting_flow(values: list, out: list) -> Dataflow:
    flow = Dataflow("counting")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(values)), lambda _: "k")
    counted = stateful_core("count", keyed, Counter, count)
    op.output("out", op.map("unkey", counted, lambda kv: kv[1]), TestingSink(out))
    return flow


def test_a_core_snapshots_while_its_flow_may_be_resumed_and_returns_none_once_it_cannot():
    flow = Dataflow("marks")
    mark = flow_recovery(flow)
    assert flow_recovery(flow) is mark and mark  # one mark per flow, true until a runner says otherwise
    core = Counter()
    core.seen = 3
    logic = CoreLogic(core, count, None, recovery=mark)
    assert pickle.loads(logic.snapshot()).seen == 3
    mark.enabled = False
    assert logic.snapshot() is None
    assert pickle.loads(CoreLogic(core, count, None).snapshot()).seen == 3  # no mark: always snapshots


def test_run_flow_marks_the_flow_by_its_recovery_directory_and_a_resume_continues_the_core(tmp_path):
    out: list = []
    plain = counting_flow([1, 2, 3], out)
    run_flow(plain, epoch_interval_s=0.01)
    assert not flow_recovery(plain)
    assert out == [(1, 1), (2, 2), (3, 3)]

    first: list = []
    values = [1, 2, TestingSource.ABORT(), 3, 4]
    resumable = counting_flow(values, first)
    run_flow(resumable, epoch_interval_s=0.0, recovery_dir=tmp_path)
    assert flow_recovery(resumable)
    assert first == [(1, 1), (2, 2)]

    resumed: list = []
    run_flow(counting_flow(values, resumed), epoch_interval_s=0.0, recovery_dir=tmp_path)
    assert resumed[-2:] == [(3, 3), (4, 4)]  # the count went on from the snapshot
