"""The chaos run's judge: it passes a faithful copy of a run and names what a broken copy lost or doubled."""

from __future__ import annotations

import pytest

from config.control_channel import ControlChannel
from feeds import make_feed
from tapeflow.chaos_verify import (MONEY_TABLES, doubled_ticks, duplicate_ids, ledger_differences, table_differences,
                                   verify_run)
from tests.integration.embedded_runs import run_embedded

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runs(module_warehouse, tmp_path_factory):
    control = ControlChannel(tmp_path_factory.mktemp("control") / "c.jsonl")
    for run_id in ("judge-a", "judge-b"):
        run_embedded(module_warehouse, make_feed("synthetic", seed=11, ticks_per_second=400, max_ticks=30_000),
                     run_id, trading=True, control=control)
    return module_warehouse


def copy_run(wh, source: str, target: str, table: str, where: str = "1") -> None:
    columns = [c for c in wh.query(f"SELECT * FROM {table} LIMIT 0").column_names if c != "ts_written"]
    listed = ", ".join(c if c != "run_id" else f"'{target}' AS run_id" for c in columns)
    final = "FINAL" if "Replacing" in wh.tables()[table] else ""
    wh.query(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {listed} FROM "
             f"(SELECT * FROM {table} {final} WHERE run_id = '{source}' AND ({where}))")


def test_two_undisturbed_runs_of_one_tape_pass(runs):
    assert verify_run(runs, "judge-a", "judge-b") == []
    assert runs.query("SELECT count() FROM fills WHERE run_id = 'judge-b'").scalar() > 0


def test_a_lost_fill_a_doubled_order_and_a_ledger_off_by_a_fill_are_named(runs):
    for table in MONEY_TABLES:
        copy_run(runs, "judge-a", "judge-broken", table,
                 "NOT (fill_id != '' AND id = (SELECT min(id) FROM exec_reports WHERE run_id = 'judge-a' "
                 "AND fill_id != ''))" if table == "exec_reports" else "1")
    # the same order sent again under another id (what a restart without idempotent ids would do)
    runs.query("INSERT INTO orders_intent SELECT * REPLACE (concat(id, '-again') AS id, 'judge-broken' AS run_id) "
               "FROM (SELECT * FROM orders_intent FINAL WHERE run_id = 'judge-a' ORDER BY id LIMIT 1)")
    problems = table_differences(runs, "judge-a", "judge-broken", MONEY_TABLES)
    assert any(p.startswith("exec_reports:") and "1 missing" in p for p in problems), problems
    assert any(p.startswith("orders_intent:") for p in problems), problems
    assert duplicate_ids(runs, "judge-broken")[0].startswith("orders_intent: 1 duplicated client_order_id")
    assert any("fills sum to" in p or "recomputed from fills" in p for p in ledger_differences(runs, "judge-broken"))


def test_a_tick_landed_twice_is_named(runs):
    for table in ("md_trades", "md_quotes"):
        copy_run(runs, "judge-a", "judge-ticks", table)
    copy_run(runs, "judge-a", "judge-ticks", "md_trades", "id = (SELECT min(id) FROM md_trades WHERE run_id = 'judge-a')")
    problems = table_differences(runs, "judge-a", "judge-ticks", ("md_trades", "md_quotes"))
    assert len(problems) == 1 and problems[0].startswith("md_trades:") and "1 held twice" in problems[0], problems
    assert doubled_ticks(runs, "judge-ticks") == [
        "md_trades: 1 tick rows held twice (produced again after a restart and landed again)"]
