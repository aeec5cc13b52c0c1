"""Every dashboard query against a real warehouse holding a small synthetic trading run."""

from __future__ import annotations

import math

import pytest

from dashboards.queries import QUERIES, fetch, fetch_one, limit_utilisation, limits_in_force
from dashboards.snapshot import RunSnapshot
from feeds import make_feed
from trading.risk_limits import default_limits
from schemas import ControlCommand, ControlKind
from config.control_channel import ControlChannel
from tests.integration.embedded_runs import run_embedded

RUN = "dash-run"
NS = 1_704_205_900_000_000_000


def _control(cid: str, kind: ControlKind, *, name: str = "", value: float = 0.0, target: str = "global",
             issued_by: str = "alice", offset_s: int = 0) -> ControlCommand:
    ts = NS + offset_s * 1_000_000_000
    return ControlCommand(id=cid, ts_event=ts, ts_ingest=ts, target=target, kind=kind, name=name, value=value,
                          issued_by=issued_by)


@pytest.fixture(scope="module")
def traded(module_warehouse, tmp_path_factory):
    control = ControlChannel(tmp_path_factory.mktemp("control") / "control.jsonl")
    feed = make_feed("synthetic", seed=5, ticks_per_second=400, max_ticks=60_000)
    run_embedded(module_warehouse, feed, RUN, trading=True, control=control)
    # operator history as the desk lands it: a limit change it applied, one it refused (with its
    # alert), and the kill switch switched on
    module_warehouse.insert_records("control", [
        _control("ctl:1", ControlKind.SET_LIMIT, name="max_gross_notional", value=400_000.0, target="paper"),
        _control("ctl:2", ControlKind.SET_LIMIT, name="max_open_orders", value=-3, target="paper", offset_s=1),
        _control("risk:paper:alert:ctl:2", ControlKind.ALERT, name="invalid_set_limit", target="paper",
                 issued_by="risk", offset_s=1),
        _control("ctl:3", ControlKind.KILL_SWITCH, value=1.0, issued_by="bob", offset_s=2),
    ], RUN)
    return module_warehouse


def params(**overrides):
    values = dict(run_id=RUN, since_ms=0, strategy="", symbol="SYN1", state="", limit=50, account="paper")
    values.update(overrides)
    return values


def run_query(wh, name, **overrides):
    bound = params(**overrides)
    return fetch(wh, name, **{p: bound[p] for p in QUERIES[name].params})


# queries that must return rows for a run that traded (rejects and dlq may rightly be empty)
MUST_HAVE_ROWS = {
    "runs", "desk_figures", "equity_curve", "positions", "orders", "fills", "universe", "candles_1s", "candles_1m",
    "symbol_signals", "symbol_fills", "limit_changes", "trading_state", "risk_usage", "max_order_notional",
    "control_log", "throughput", "latency_histogram", "latency_summary", "model_versions",
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_dashboard_query_when_run_traded_then_runs_and_returns_rows(traded, name):
    frame = run_query(traded, name)
    assert frame.width > 0
    if name in MUST_HAVE_ROWS:
        assert frame.height > 0, f"{name} returned no rows for a run that traded"


def test_every_query_is_bound_to_a_run_except_the_run_list():
    unbound = [name for name, q in QUERIES.items() if "run_id" not in q.params]
    assert unbound == ["runs"]


def test_fetch_when_a_parameter_is_missing_then_type_error_names_it(traded):
    with pytest.raises(TypeError, match="symbol"):
        fetch(traded, "candles_1s", run_id=RUN, limit=10)


@pytest.mark.parametrize("hostile", ["x' OR '1'='1", "dash-run'--", "a\\'b", "{run_id:String}", "dash-run' OR run_id != '"])
def test_query_when_run_id_or_filter_has_quotes_then_it_is_just_a_value(traded, hostile):
    for name, query in QUERIES.items():
        if "run_id" not in query.params:
            continue
        frame = run_query(traded, name, run_id=hostile, symbol=hostile, strategy=hostile)
        figures = {"desk_figures", "risk_usage", "max_order_notional"}  # one-row aggregates over no rows
        if name == "throughput":
            assert frame["rows_total"].sum() == 0
        elif name not in figures:
            assert frame.height == 0, f"{name} matched rows for run id {hostile!r}"
    assert run_query(traded, "orders", symbol="SYN1' OR '1'='1").height == 0


def test_desk_figures_when_traded_then_match_the_tables(traded):
    figures = fetch_one(traded, "desk_figures", run_id=RUN)
    fills, notional = traded.query(
        "SELECT count(), sum(last_qty * last_price) FROM fills WHERE run_id = {r:String}", {"r": RUN}).rows[0]
    equity = traded.query(
        "SELECT equity FROM pnl FINAL WHERE run_id = {r:String} AND strategy = '*' "
        "ORDER BY ts_event DESC, ts_ingest DESC LIMIT 1", {"r": RUN}).scalar()
    orders = traded.query("SELECT count() FROM orders_intent FINAL WHERE run_id = {r:String} AND action = 'new'",
                          {"r": RUN}).scalar()
    assert figures["fills"] == fills > 0
    assert math.isclose(figures["filled_notional"], notional, rel_tol=1e-12)
    assert figures["equity"] == equity
    assert figures["orders"] == orders
    assert 0 < figures["filled_orders"] <= figures["approved"] <= figures["orders"]


def test_equity_curve_when_asked_since_a_point_then_only_later_points_in_time_order(traded):
    curve = run_query(traded, "equity_curve")
    middle = int(curve["t"][curve.height // 2])
    later = run_query(traded, "equity_curve", since_ms=middle)
    assert curve["t"].is_sorted() and curve["t"].n_unique() == curve.height
    assert later.height > 0 and int(later["t"].min()) > middle
    assert later["t"].to_list() == [t for t in curve["t"].to_list() if t > middle]


def test_positions_when_traded_then_quantities_equal_signed_fills(traded):
    positions = {r["symbol"]: r["quantity"] for r in run_query(traded, "positions").iter_rows(named=True)}
    fills = dict(traded.query("SELECT symbol, sum(if(side = 'buy', last_qty, -last_qty)) FROM fills "
                              "WHERE run_id = {r:String} GROUP BY symbol", {"r": RUN}).rows)
    assert positions and {s: round(q, 9) for s, q in positions.items()} == {s: round(q, 9) for s, q in fills.items()}


def test_orders_when_filtered_by_symbol_and_state_then_only_those(traded):
    orders = run_query(traded, "orders", symbol="SYN2", state="filled", limit=500)
    assert orders.height > 0
    assert set(orders["symbol"]) == {"SYN2"} and set(orders["order_state"]) == {"filled"}
    assert orders["t"].to_list() == sorted(orders["t"].to_list(), reverse=True)  # latest first


def test_limit_changes_when_one_was_refused_then_only_the_applied_one_counts(traded):
    changes = run_query(traded, "limit_changes")
    assert changes["name"].to_list() == ["max_gross_notional"]
    limits, changed_by = limits_in_force(changes, default_limits())
    assert limits.max_gross_notional == 400_000.0 and changed_by == {"max_gross_notional": "alice"}


def test_snapshot_when_kill_switch_record_landed_then_on_and_says_who(traded):
    snap = RunSnapshot.load(traded, RUN, "paper")
    assert snap.kill_switch_on and snap.kill_switch_by == "bob" and snap.kill_switch_target == "global"
    assert snap.figures["fills"] > 0


def test_limit_utilisation_when_gross_is_half_the_limit_then_half_used():
    usage = {"gross_notional": 250_000.0, "net_notional": -100_000.0, "equity_now": 990_000.0,
             "day_start_equity": 1_000_000.0, "drawdown_now": 0.01}
    rows = {r["limit"]: r for r in limit_utilisation(usage, default_limits().with_limit("max_gross_notional", 500_000), None)}
    assert rows["max_gross_notional"]["used"] == 0.5
    assert rows["max_net_notional"]["current"] == 100_000.0  # |net|
    assert rows["daily_loss_limit"]["current"] == 10_000.0 and rows["daily_loss_limit"]["used"] == 0.5
    assert rows["max_drawdown_pct"]["used"] == pytest.approx(0.2)
    assert rows["price_collar_pct"]["used"] is None and rows["max_order_notional"]["used"] is None
