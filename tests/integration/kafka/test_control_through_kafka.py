"""Operator commands through the ``control`` topic reach the split stages (a real broker, the real CLI).

The stages run live as ``tapeflow flow STAGE`` processes; the tape is published in two parts with the
command sent between them, so "after the command" is the second part of the tape. The sink lands
every topic, the control topic included, as ``tapeflow run --brokers`` does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tapeflow.broker import die_with_parent
from tests.integration.kafka.split_runs import (
    STAGE_ENV,
    publish_ticks,
    sink_to,
    split_config,
    stage_command,
    stop_stages,
    tape,
    wait_caught_up,
)
from tests.kafka_fixtures import topic_message_count

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
SYMBOLS = tuple(f"SYN{i}" for i in range(8))
# The embedded run of this tape sends 24 orders before tick 40,000 and 78 after it (the features' 35-bar
# warm-up takes about the first 30,000 ticks): the desk trades before the command and would after it.
TICKS = 80_000
FIRST_PART = 40_000


def start(bootstrap: str, prefix: str, stage: str, root: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    log = open(root / f"{stage}.log", "ab")
    return subprocess.Popen([*stage_command(bootstrap, prefix, stage, root / stage, SYMBOLS), *extra], env=STAGE_ENV,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)


def tapeflow(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The CLI as an operator runs it, from another folder (so no spool of a run is anywhere near)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("TAPEFLOW_KAFKA_BOOTSTRAP", None)  # only the --brokers given here may route
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


def wait_for_messages(bootstrap: str, topic: str, at_least: int, processes: dict, root: Path,
                      timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while topic_message_count(bootstrap, topic) < at_least:
        for stage, process in processes.items():
            assert process.poll() is None, f"{stage} ended: {(root / f'{stage}.log').read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"fewer than {at_least} messages in {topic} after {timeout_s} s"
        time.sleep(0.2)


@pytest.mark.parametrize("desk", [("trading",), ("risk", "execution", "pnl")], ids=["fused", "separate"])
def test_kill_switch_cli_with_brokers_when_sent_mid_tape_then_split_desk_denies_every_later_order_and_the_command_lands(
        kafka_topics, module_warehouse, tmp_path, desk):
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    ticks = list(tape(TICKS).ticks())
    second_part_starts = ticks[FIRST_PART].ts_event
    stages = {stage: start(bootstrap, prefix, stage, tmp_path) for stage in ("market", "signals", *desk)}
    try:
        publish_ticks(bootstrap, prefix, ticks[:FIRST_PART])
        wait_for_messages(bootstrap, prefix + "orders.approved", 10, stages, tmp_path)  # it trades
        sent = tapeflow(["control", "kill-switch", "on", "--brokers", bootstrap, "--prefix", prefix], tmp_path,
                        TAPEFLOW_OPERATOR="carol")
        assert sent.returncode == 0, sent.stderr
        assert f"as carol via kafka {bootstrap} topic {prefix}control" in sent.stdout
        assert not (tmp_path / "data").exists()  # no spool written on the way
        publish_ticks(bootstrap, prefix, ticks[FIRST_PART:])
        wait_caught_up(bootstrap, tmp_path, stages)
    finally:
        stop_stages(stages)
    run_id = f"kill-{desk[0]}"
    sink_to(module_warehouse, split_config(bootstrap, prefix, tape(TICKS)), run_id)

    wh = module_warehouse
    approved_late = wh.query(
        "SELECT count() FROM orders_approved FINAL WHERE run_id = {r:String} AND toUnixTimestamp64Nano(ts_event) >= "
        "{t:Int64}", {"r": run_id, "t": second_part_starts}).scalar()
    approved = wh.query("SELECT count() FROM orders_approved FINAL WHERE run_id = {r:String}", {"r": run_id}).scalar()
    killed, other = wh.query(
        "SELECT countIf(has(reasons, 'kill_switch')), countIf(NOT has(reasons, 'kill_switch')) "
        "FROM orders_rejected FINAL WHERE run_id = {r:String} AND toUnixTimestamp64Nano(ts_event) >= {t:Int64}",
        {"r": run_id, "t": second_part_starts}).rows[0]
    assert approved > 0 and approved_late == 0, (approved, approved_late)
    assert killed > 0 and other == 0, (killed, other)
    commands = wh.query("SELECT kind, value, target, issued_by FROM control FINAL WHERE run_id = {r:String} "
                        "AND issued_by != 'risk'", {"r": run_id}).rows
    assert commands == [("kill_switch", 1.0, "global", "carol")]


def test_models_activate_cli_with_brokers_when_sent_mid_tape_then_split_signals_swap_between_bars(
        kafka_topics, module_warehouse, tmp_path):
    from tests.unit.strategies.lgbm_models import registry_with, tiny_booster

    registry = registry_with(tmp_path, tiny_booster(seed=1), tiny_booster(seed=2))
    registry.activate("lightgbm", "v1")
    bootstrap, prefix = kafka_topics.bootstrap, kafka_topics.prefix
    ticks = list(tape(TICKS).ticks())
    lightgbm = ("--strategy", "lightgbm", "--registry", str(registry.root))
    stages = {"market": start(bootstrap, prefix, "market", tmp_path),
              "signals": start(bootstrap, prefix, "signals", tmp_path, lightgbm)}
    try:
        publish_ticks(bootstrap, prefix, ticks[:FIRST_PART])
        wait_for_messages(bootstrap, prefix + "signals", 10 * len(SYMBOLS), stages, tmp_path)  # v1 serves
        sent = tapeflow(["models", "activate", "v2", "--registry", str(registry.root), "--brokers", bootstrap,
                         "--prefix", prefix], tmp_path, TAPEFLOW_OPERATOR="quant")
        assert sent.returncode == 0, sent.stderr
        assert f"sent activate_model v2 as quant via kafka {bootstrap} topic {prefix}control" in sent.stderr
        publish_ticks(bootstrap, prefix, ticks[FIRST_PART:])
        wait_caught_up(bootstrap, tmp_path, stages)
    finally:
        stop_stages(stages)
    sink_to(module_warehouse, split_config(bootstrap, prefix, tape(TICKS)), "swap")

    wh = module_warehouse
    rows = wh.query("SELECT toUnixTimestamp64Nano(bar_end), model_version FROM signals FINAL WHERE run_id = 'swap' "
                    "ORDER BY bar_end").rows
    versions_by_bar = defaultdict(set)
    for bar_end, version in rows:
        versions_by_bar[bar_end].add(version)
    assert all(len(v) == 1 for v in versions_by_bar.values()), "a bar scored by two models"
    sequence = [next(iter(v)) for _, v in sorted(versions_by_bar.items())]
    switch = sequence.index("v2")
    assert switch > 0 and set(sequence[:switch]) == {"v1"} and set(sequence[switch:]) == {"v2"}
    control = wh.query("SELECT kind, name, issued_by, detail FROM control FINAL WHERE run_id = 'swap' ORDER BY ts_ingest",
                       ).rows
    activations = [(kind, name, issued_by) for kind, name, issued_by, _ in control if kind == "activate_model"]
    # the operator's command and the stage's acceptance, once each: the stage never re-applies its own record
    assert activations == [("activate_model", "v2", "quant")] * 2, control
    assert any(detail.startswith("accepted v2") for *_, detail in control), control
    assert any(kind == "alert" and detail.startswith("model v2 in effect") for kind, _, _, detail in control), control


def test_kill_switch_cli_when_the_prefix_has_no_topics_then_exit_2_naming_topics_create(kafka_bootstrap, tmp_path):
    done = tapeflow(["control", "kill-switch", "on", "--brokers", kafka_bootstrap, "--prefix", "never-created."],
                    tmp_path)
    assert done.returncode == 2, done.stdout
    assert "never-created.control does not exist" in done.stderr and "tapeflow topics create" in done.stderr


def test_kill_switch_cli_when_no_broker_answers_then_exit_2_with_the_reason_and_no_spool(tmp_path):
    done = tapeflow(["control", "kill-switch", "on", "--brokers", "127.0.0.1:1"], tmp_path)
    assert done.returncode == 2, done.stdout
    assert "cannot reach Kafka at 127.0.0.1:1" in done.stderr and "%3|" not in done.stderr  # no librdkafka chatter
    assert not (tmp_path / "data").exists()
