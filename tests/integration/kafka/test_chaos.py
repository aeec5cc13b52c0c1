"""The short chaos run of `make test`: a few seeded kill points (a stage, two at once, or the broker)
while the split pipeline replays a tape; supervision brings them back and the warehouse must equal
the undisturbed embedded run: every table row for row, no id twice, the ledger equal to its fills.

The seed is printed; TAPEFLOW_CHAOS_SEED=N replays a failure. benchmarks/chaos.py is the long run.
"""

from __future__ import annotations

import os
import random

import pytest

from tapeflow.broker import LocalBroker
from tapeflow.chaos import ChaosHarness, judge, kill_plan

pytestmark = pytest.mark.integration

STAGES = ("market", "signals", "trading", "sink")


def test_a_seeded_chaos_run_loses_and_doubles_nothing(tmp_path, capsys):
    from tests.kafka_fixtures import _no_kafka, local_broker_possible

    possible, why_not = local_broker_possible()  # the harness kills and restarts a broker of its own
    if not possible:
        _no_kafka(why_not)  # skips naming what is missing, or fails where Kafka is required (CI)
    seed = int(os.environ.get("TAPEFLOW_CHAOS_SEED") or random.randrange(1_000_000))
    print(f"chaos seed {seed} (replay with TAPEFLOW_CHAOS_SEED={seed})")
    harness = ChaosHarness(tmp_path, ticks=40_000, rate=2_000.0)  # 20 s of tape
    plan = kill_plan(seed, STAGES, points=4, span_s=(1.0, 12.0))  # seconds after every stage is up
    with LocalBroker(tmp_path / "broker", tied_to_parent=True) as broker:
        harness.reference()
        result = judge(harness, harness.run(seed, plan, broker), broker.bootstrap)
    with capsys.disabled():
        print(result.summary())
        for recovery in result.recoveries:
            print(f"  {recovery.target} killed at {recovery.killed_at:.1f}s: back in "
                  + (f"{recovery.seconds:.1f}s" if recovery.seconds is not None else "(not timed)"))
    assert result.passed, f"seed {seed}: {result.problems}; logs in {result.log_dir}"
    assert result.executed and any(r.seconds is not None for r in result.recoveries), "no kill landed while the tape ran"
