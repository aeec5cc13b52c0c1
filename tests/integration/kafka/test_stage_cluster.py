"""One stage as a Bytewax cluster of two processes (two hosts, on loopback) gives the same records as one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config.control_channel import ControlChannel
from flows.pipeline import TradingConfig, feed_universe
from tapeflow.dashboard_server import free_port
from tests.integration.embedded_runs import run_embedded
from tests.integration.kafka.split_runs import (
    MARKET,
    MONEY,
    assert_same_tables,
    publish_tape,
    run_stages,
    sink_to,
    split_config,
    tape,
)
from trading.desk import DeskConfig

pytestmark = pytest.mark.integration


def test_the_market_stage_as_a_two_process_cluster_then_same_records_as_the_embedded_run(
        kafka_topics, module_warehouse, tmp_path):
    feed = tape()
    universe = feed_universe(feed)
    run_embedded(module_warehouse, tape(), "cluster-fused", control=ControlChannel(tmp_path / "c.jsonl"),
                 trading=TradingConfig(desk=DeskConfig(universe=universe), universe=universe))
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    publish_tape(bootstrap, prefix, tape())
    addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(2))
    command = [sys.executable, "-m", "tapeflow.cli", "flow", "market", "--brokers", bootstrap, "--prefix", prefix,
               "--until-end", "--symbols", ",".join(universe), "--addresses", addresses,
               "--recovery-dir", str(tmp_path / "market")]  # one folder, shared by the cluster's processes
    processes = [subprocess.Popen(command + ["--process-id", str(i)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert all(f"cluster process {i} of" in out for i, out in enumerate(outputs)), outputs
    assert list((tmp_path / "market").glob("part-*.sqlite3")), "the cluster snapshots into the shared folder"
    cfg = split_config(bootstrap, prefix, feed)
    run_stages(cfg, ("signals", "trading"))
    sink_to(module_warehouse, cfg, "cluster-split")
    assert_same_tables(module_warehouse, "cluster-fused", "cluster-split", MARKET + MONEY)


@pytest.mark.parametrize("extra,message", [
    (["--addresses", "127.0.0.1:1;127.0.0.1:2"], "--addresses and --process-id go together"),
    (["--addresses", "127.0.0.1:1", "--process-id", "1"], "is not an index of the 1 --addresses"),
])
def test_a_half_configured_cluster_is_refused(extra, message):
    done = subprocess.run([sys.executable, "-m", "tapeflow.cli", "flow", "market", "--brokers", "127.0.0.1:1", *extra],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr
