"""tapeflow run --brokers under supervision, against the real broker: a stage that always crashes at
start stops the run after its restart budget with a clear message, and no other stage is left running;
a stage killed mid-run comes back and the run still lands its whole tape."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from feeds import make_feed
from flows.pipeline import feed_market_streams, feed_universe
from tapeflow.split_run import SplitRun, run_split
from tapeflow.supervisor import RestartPolicy

pytestmark = pytest.mark.integration

QUICK = RestartPolicy(max_restarts=3, window_s=60.0, backoff_initial_s=0.1, backoff_max_s=0.5)


@dataclass
class BrokenSignals(SplitRun):
    """The signals stage replaced by a process that crashes as it starts."""

    def stage_command(self, stage: str) -> list[str]:
        if stage == "signals":
            return [sys.executable, "-c", "import sys; print('signals: cannot start'); sys.exit(3)"]
        return super().stage_command(stage)


def split_for(cls, kafka_topics, tmp_path: Path, run_id: str, feed) -> SplitRun:
    return cls(kafka_topics.bootstrap, kafka_topics.prefix, tmp_path / "recovery" / run_id, run_id,
               f"chdb://{tmp_path}/wh", feed_universe(feed), feed_market_streams(feed), tmp_path / "logs" / run_id,
               restart_policy=QUICK)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stage_that_always_crashes_stops_the_run_after_its_budget_and_leaves_no_stage_running(
        kafka_topics, tmp_path, capsys):
    feed = make_feed("synthetic", seed=5, ticks_per_second=400, max_ticks=20_000, rate=2_000.0)
    split = split_for(BrokenSignals, kafka_topics, tmp_path, "broken", feed)
    with pytest.raises(typer.Exit) as ended:
        run_split(feed, split, None, threading.Event(), 0.5)
    assert ended.value.exit_code == 1
    err = capsys.readouterr().err
    assert "error: stage signals exited with code 3 after 3 restart(s)" in err, err
    assert str(split.log_path("signals")) in err
    assert (split.log_path("signals")).read_text().count("signals: cannot start") == 4  # start + 3 restarts
    pids = {stage: int((split.log_dir / f"{stage}.pid").read_text()) for stage in split.stages}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [stage for stage, pid in pids.items() if alive(pid)], "a stage outlived the failed run"


def test_a_stage_killed_mid_run_is_restarted_and_the_tape_lands_whole(kafka_topics, tmp_path, capsys):
    feed = make_feed("synthetic", seed=5, ticks_per_second=400, max_ticks=30_000, rate=2_000.0)
    split = split_for(SplitRun, kafka_topics, tmp_path, "killed", feed)
    killed = []

    def kill_signals_once_up() -> None:
        snapshot = split.recovery_root / "signals"
        deadline = time.monotonic() + 120
        while not any(snapshot.glob("part-*.sqlite3")) and time.monotonic() < deadline:
            time.sleep(0.2)
        pid = int((split.log_dir / "signals.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    threading.Thread(target=kill_signals_once_up, daemon=True).start()
    run_split(feed, split, None, threading.Event(), 0.5)
    err = capsys.readouterr().err
    assert killed, "the signals stage never came up"
    assert f"supervisor: stage signals was killed by SIGKILL" in err, err
    assert "end of tape landed" in err
    from sinks.warehouse import Warehouse

    wh = Warehouse.connect(split.warehouse)
    try:
        trades, quotes = wh.query("SELECT (SELECT uniqExact(id) FROM md_trades WHERE run_id = 'killed'), "
                                  "(SELECT uniqExact(id) FROM md_quotes WHERE run_id = 'killed')").rows[0]
        assert trades + quotes == 30_000
        restarts = wh.query("SELECT count() FROM control WHERE run_id = 'killed' AND kind = 'alert' "
                            "AND name = 'stage_restarted'").scalar()
        assert restarts == 1  # the restart is a record in the warehouse
    finally:
        wh.close()
