"""Stop and unwind a running embedded pipeline through its control spool: cancel-all, kill switch
with flatten, and resume, against the real engine, the simulated venue and the warehouse."""

from __future__ import annotations

import threading
import time

import pytest

from config.control_channel import ControlChannel, make_command
from feeds import make_feed
from schemas import ControlKind
from config.settings import Settings
from flows.pipeline import MarketDataConfig, TradingConfig, build_embedded_flow, feed_market_streams, feed_universe, run_flow
from flows.source import FeedLimits
from sinks.writer import BatchingWriter
from tapeflow.progress import RunProgress

pytestmark = pytest.mark.integration


def paced_feed():
    # 400 ticks/s of event time at 5x: the features' warm-up (35 one-second bars) takes ~7 s of
    # wall clock, then ~9 s of trading
    return make_feed("synthetic", seed=5, rate=400, speed=5, max_ticks=400 * 80)


def run_in_background(wh, run_id: str, control: ControlChannel, max_ticks: int | None = None, recovery_dir=None):
    """The run in a thread; the box gets its RunProgress (records landed per table) at once."""
    progress = RunProgress()
    box: dict = {"progress": progress}

    def target() -> None:
        try:
            settings = Settings()
            feed = paced_feed()
            trading = TradingConfig.from_settings(settings, feed_universe(feed), feed_market_streams(feed))
            writer = BatchingWriter(wh, run_id)
            flow = build_embedded_flow(MarketDataConfig.from_settings(settings, None), feed, writer, progress,
                                       FeedLimits(max_ticks=max_ticks), resumable=recovery_dir is not None,
                                       trading=trading, control=control)
            run_flow(flow, epoch_interval_s=0.2, recovery_dir=recovery_dir)
            writer.flush()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = exc
        box["done"] = True

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def fills_landed(box: dict) -> bool:
    """Positions snapshots are written on fills: some landed means positions are open."""
    return box.get("done") or box["progress"].records.get("positions", 0) >= 5


def wait_for(what: str, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:g} s")
        time.sleep(0.1)


def rows(wh, sql: str, run_id: str) -> list[tuple]:
    return list(wh.query(sql, {"r": run_id}).rows)


def final_positions(wh, run_id: str) -> dict[tuple[str, str], float]:
    return {(s, sym): q for s, sym, q in rows(wh, (
        "SELECT strategy, symbol, argMax(quantity, (ts_event, id)) FROM positions FINAL "
        "WHERE run_id = {r:String} GROUP BY strategy, symbol"), run_id)}


@pytest.fixture(scope="module")
def flattened(module_warehouse, tmp_path_factory):
    """A run killed and flattened once positions are open."""
    control = ControlChannel(tmp_path_factory.mktemp("unwind") / "control.jsonl")
    thread, box = run_in_background(module_warehouse, "unwind-a", control)
    wait_for("fills", lambda: fills_landed(box), 90)
    control.send(make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="ops"))
    flatten = control.send(make_command(ControlKind.FLATTEN, issued_by="ops", detail="kill switch on --flatten"))
    thread.join(180)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    return module_warehouse, flatten


def test_kill_switch_and_flatten_when_positions_open_then_every_position_ends_at_zero(flattened):
    wh, flatten = flattened
    closes = rows(wh, "SELECT client_order_id FROM orders_approved FINAL WHERE run_id = {r:String} "
                      "AND action = 'new' AND position(client_order_id, '-u') > 0", "unwind-a")
    assert closes, "the flatten sent no closing order"
    positions = final_positions(wh, "unwind-a")
    assert positions and all(q == 0.0 for q in positions.values()), positions


def test_flatten_when_landed_then_the_command_and_what_it_did_are_in_the_control_table(flattened):
    wh, flatten = flattened
    control = rows(wh, "SELECT kind, name, issued_by, detail FROM control WHERE run_id = {r:String} ORDER BY ts_ingest",
                   "unwind-a")
    kinds = [(k, n) for k, n, _, _ in control]
    assert ("flatten", "") in kinds and ("alert", "flatten") in kinds and ("alert", "flatten_closing") in kinds
    assert all(by == "ops" for k, _, by, _ in control if k in ("flatten", "kill_switch"))
    every_fill_after = rows(wh, "SELECT count() FROM exec_reports FINAL WHERE run_id = {r:String} AND fill_id != '' "
                                "AND position(client_order_id, '-u') = 0 AND state = 'filled' "
                                "AND toUnixTimestamp64Nano(ts_event) > (SELECT max(toUnixTimestamp64Nano(ts_event)) "
                                "FROM orders_approved FINAL WHERE run_id = {r:String} AND position(client_order_id, '-u') > 0)",
                            "unwind-a")
    assert every_fill_after == [(0,)]  # nothing but the closes traded after the flatten


def test_cancel_all_when_sent_to_a_running_pipeline_then_each_working_order_canceled_with_a_report(
        module_warehouse, tmp_path):
    control = ControlChannel(tmp_path / "control.jsonl")
    thread, box = run_in_background(module_warehouse, "unwind-c", control)
    wait_for("fills", lambda: fills_landed(box), 90)
    control.send(make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="ops"))
    control.send(make_command(ControlKind.CANCEL_ALL, issued_by="ops"))
    thread.join(180)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    [(sent, answered)] = rows(module_warehouse, (
        "SELECT (SELECT count() FROM orders_approved FINAL WHERE run_id = {r:String} AND action = 'cancel'), "
        "(SELECT count() FROM exec_reports FINAL WHERE run_id = {r:String} AND reason LIKE 'cancel%' "
        "OR (run_id = {r:String} AND reason = 'canceled_by_client'))"), "unwind-c")
    assert sent == answered  # each cancel is an execution report
    [(alert,)] = rows(module_warehouse, "SELECT detail FROM control WHERE run_id = {r:String} AND kind = 'alert' "
                                        "AND name = 'cancel_all'", "unwind-c")
    assert alert.endswith("(by ops)")


def test_flatten_when_the_run_stops_and_resumes_from_its_snapshot_then_positions_are_closed_once(
        module_warehouse, tmp_path):
    """Stopped after the flatten and resumed from the recovery snapshot (which may hold the
    command's spool offset before or after it): the closing orders keep their ids, so no position
    is closed twice, none flips, and the warehouse still balances positions against fills."""
    control, recovery = ControlChannel(tmp_path / "control.jsonl"), tmp_path / "recovery"
    thread, box = run_in_background(module_warehouse, "unwind-r", control, max_ticks=400 * 65, recovery_dir=recovery)
    wait_for("fills", lambda: fills_landed(box), 90)
    control.send(make_command(ControlKind.KILL_SWITCH, value=1.0, issued_by="ops"))
    control.send(make_command(ControlKind.FLATTEN, issued_by="ops"))
    thread.join(180)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    thread, box = run_in_background(module_warehouse, "unwind-r", control, recovery_dir=recovery)
    thread.join(240)
    assert not thread.is_alive() and "error" not in box, box.get("error")

    wh = module_warehouse
    closes = rows(wh, "SELECT client_order_id, quantity FROM orders_approved FINAL WHERE run_id = {r:String} "
                      "AND action = 'new' AND position(client_order_id, '-u') > 0", "unwind-r")
    assert closes
    filled = dict(rows(wh, "SELECT client_order_id, sum(last_qty) FROM exec_reports FINAL WHERE run_id = {r:String} "
                           "AND fill_id != '' GROUP BY client_order_id", "unwind-r"))
    assert all(filled.get(coid, 0.0) <= qty for coid, qty in closes)  # no close filled beyond its order
    positions = final_positions(wh, "unwind-r")
    assert positions and all(q == 0.0 for q in positions.values()), positions
    by_fills = {(s, sym): q for s, sym, q in rows(wh, (
        "SELECT strategy, symbol, sum(if(side = 'buy', last_qty, -last_qty)) FROM exec_reports FINAL "
        "WHERE run_id = {r:String} AND fill_id != '' GROUP BY strategy, symbol"), "unwind-r")}
    assert all(abs(q) < 1e-9 for q in by_fills.values()), by_fills  # every fill once: the book nets to flat
