"""The dashboard's pages against a real run, its operator commands, and who may serve it where."""

from __future__ import annotations

import logging

import pytest
from typer.testing import CliRunner

from dashboards.app import DashboardSession, load_extension
from dashboards.context import DashboardContext
from dashboards.operator import OperatorDesk
from feeds import make_feed
from schemas import ControlKind
from config.control_channel import ControlChannel
from tapeflow.dashboard_server import DashboardAccessError, dashboard_reader, require_credentials, start_dashboard
from tests.integration.embedded_runs import run_embedded

RUN = "dash-app"


@pytest.fixture(scope="module")
def traded(module_warehouse, tmp_path_factory):
    control = ControlChannel(tmp_path_factory.mktemp("control") / "control.jsonl")
    feed = make_feed("synthetic", seed=5, ticks_per_second=400, max_ticks=60_000)
    run_embedded(module_warehouse, feed, RUN, trading=True, control=control)
    return module_warehouse


@pytest.fixture
def session(traded, tmp_path):
    load_extension()
    operator = OperatorDesk(ControlChannel(tmp_path / "control.jsonl"), "paper")
    return DashboardSession(DashboardContext(traded, operator, run_id=RUN))


def test_session_when_refreshed_then_every_page_shows_the_run(session):
    session.refresh()
    for index in range(len(session.pages)):
        session.tabs.active = index  # a tab change refreshes the page it shows
        assert "refresh failed" not in session.header.object, session.header.object
    desk, blotter, market, risk, system = session.pages
    assert session.run.value == RUN
    assert 'data-kpi="fills"' in desk.kpis.object and len(desk.curve.data["t"]) > 10
    assert len(desk.pnl_table.value) > 1 and len(desk.positions_table.value) > 0
    assert len(blotter.orders.value) > 0 and len(blotter.fills.value) > 0
    assert market.symbol.value and len(market.candles.data["t"]) > 10 and len(market.signals.data["t"]) > 0
    assert len(risk.limits.value) == 12 and risk.limits.value["used_pct"].notna().sum() >= 8
    assert set(system.throughput.value["table"]) >= {"md_trades", "orders_intent", "pnl"}
    assert sum(system.histograms["tick_to_fill"].data["n"]) > 0


def test_desk_when_refreshed_twice_then_equity_is_streamed_not_rebuilt(session):
    desk = session.pages[0]
    session.refresh()
    source, points = desk.curve, len(desk.curve.data["t"])
    session.refresh()
    assert desk.curve is source and len(desk.curve.data["t"]) == points  # nothing new landed: no duplicates


def test_blotter_when_filtered_by_symbol_then_only_that_symbol(session):
    session.tabs.active = 1
    blotter = session.pages[1]
    blotter.symbol.value = "SYN3"  # a filter change refreshes at once
    assert len(blotter.orders.value) > 0 and set(blotter.orders.value["symbol"]) == {"SYN3"}


def test_kill_switch_when_clicked_then_nothing_is_sent_until_confirmed(session, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TAPEFLOW_OPERATOR", "carol")
    risk = session.pages[3]
    spool = ControlChannel(tmp_path / "control.jsonl")
    risk._ask_kill()
    assert risk.confirm_button.visible and spool.read_from(0)[0] == []
    risk._cancel()
    assert not risk.confirm_button.visible and spool.read_from(0)[0] == []
    risk._ask_kill()
    with caplog.at_level(logging.WARNING, logger="tapeflow.dashboard.operator"):
        risk._confirm()
    (command,), _, _ = spool.read_from(0)
    assert command.kind is ControlKind.KILL_SWITCH and command.value == 1.0 and command.issued_by == "carol"
    assert "carol" in caplog.text and "kill_switch" in caplog.text


def test_limit_change_when_value_invalid_then_refused_before_sending(session, tmp_path):
    risk = session.pages[3]
    risk.limit_name.value, risk.limit_value.value = "max_open_orders", -5.0
    risk._ask_limit()
    assert not risk.confirm_button.visible and "invalid value" in risk.outcome.object
    assert ControlChannel(tmp_path / "control.jsonl").read_from(0)[0] == []


def test_operator_set_limit_then_spool_carries_the_user_and_the_account(tmp_path):
    desk = OperatorDesk(ControlChannel(tmp_path / "c.jsonl"), "paper")
    desk.set_limit("max_gross_notional", 750_000.0, "dave")
    (command,), _, _ = ControlChannel(tmp_path / "c.jsonl").read_from(0)
    assert (command.kind, command.name, command.value, command.target, command.issued_by) == (
        ControlKind.SET_LIMIT, "max_gross_notional", 750_000.0, "paper", "dave")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "desk.example"])
def test_serving_when_bound_beyond_loopback_without_password_then_refused(host):
    with pytest.raises(DashboardAccessError, match="password"):
        require_credentials(host, None)
    require_credentials(host, "s3cret")  # with one it may


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_serving_when_bound_to_loopback_then_no_password_needed(host):
    require_credentials(host, None)


def test_start_dashboard_when_bound_to_all_interfaces_without_password_then_nothing_is_served(traded, tmp_path):
    ctx = DashboardContext(traded, OperatorDesk(ControlChannel(tmp_path / "c.jsonl")))
    with pytest.raises(DashboardAccessError):
        start_dashboard(ctx, host="0.0.0.0", port=0)


def test_cli_dashboard_when_public_host_without_password_then_exit_2_with_the_reason(monkeypatch):
    import typer

    from tapeflow.cli_dashboard import dashboard

    monkeypatch.delenv("TAPEFLOW_DASHBOARD_PASSWORD", raising=False)
    app = typer.Typer()
    app.command()(dashboard)
    result = CliRunner().invoke(app, ["--host", "0.0.0.0", "--warehouse", "chdb:///nonexistent/never-opened"])
    assert result.exit_code == 2
    assert "without sign-in" in result.output and "tapeflow users add" in result.output


def test_dashboard_reader_when_closed_then_the_pipeline_warehouse_still_works(traded):
    reader, owned = dashboard_reader(traded)
    assert owned and reader is not traded
    assert reader.query("SELECT count() FROM md_trades WHERE run_id = {r:String}", {"r": RUN}).scalar() > 0
    reader.close()
    assert traded.query("SELECT count() FROM md_trades WHERE run_id = {r:String}", {"r": RUN}).scalar() > 0
