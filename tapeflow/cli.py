"""The ``tapeflow`` command."""

from __future__ import annotations

import json
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from sinks.urls import redact_url
from config.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Trade from a live market tape.")


@app.callback()
def _logging() -> None:
    """Every command logs as TAPEFLOW_LOG_FORMAT says (text, or json for a log pipeline)."""
    from pydantic import ValidationError

    from tapeflow.logs import configure_logging

    try:
        settings = Settings()
    except ValidationError as exc:  # a bad TAPEFLOW_* variable: name it and what it takes
        problems = "; ".join(f"TAPEFLOW_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        _fail(f"bad setting: {problems}")
    configure_logging(settings.log_format)


def _default_run_id() -> str:
    return "run-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def run(
    ctx: typer.Context,
    feed: str = typer.Option("synthetic", help="synthetic | replay (tick files) | bars (OHLCV bar files) | alpaca"),
    venue: str = typer.Option("sim", help="sim (the simulated exchange) | alpaca (paper trading)."),
    alpaca_feed: Optional[str] = typer.Option(None, help="Alpaca stock data feed: iex | sip (default APCA_DATA_FEED)."),
    crypto: bool = typer.Option(False, "--crypto", help="Alpaca crypto data (symbols like BTC/USD)."),
    live: bool = typer.Option(False, "--live", help="Alpaca live (real-money) trading instead of paper."),
    adopt: bool = typer.Option(False, "--adopt", help="--venue alpaca: take Alpaca's positions (and open orders) "
                               "into the ledger at start, as adoption records; without it they are a difference."),
    path: Optional[list[str]] = typer.Option(None, help="--feed replay|bars: a tick or bar file (Parquet, CSV, CSV.gz/.zst), "
                                             "directory or glob, optionally PATH@SYMBOL; repeat to merge files in event time."),
    columns: Optional[str] = typer.Option(None, help="--feed replay: column roles, e.g. ts=time:ms,price=px,size=qty,symbol=ticker "
                                          "(units s|ms|us|ns|iso); the rest is detected from column names."),
    mapping: Optional[Path] = typer.Option(None, help="--feed replay: a TOML column mapping (ColumnMapping fields; [files.\"GLOB\"] tables per file)."),
    preset: Optional[str] = typer.Option(None, help="--feed replay: a named mapping (tardis-trades, binance-spot-trades, histdata-quotes)."),
    symbols: Optional[str] = typer.Option(None, help="Comma-separated symbols (synthetic: names; replay: universe)."),
    rate: Optional[float] = typer.Option(None, help="Pace the synthetic feed at N ticks/s on the wall clock, flat over the day (event time follows). Default: as fast as possible."),
    speed: float = typer.Option(0.0, help="Pace: N x real time (replay, or synthetic with --rate); 0 = as fast as possible."),
    duration: Optional[float] = typer.Option(None, help="Stop after this many wall-clock seconds."),
    max_ticks: Optional[int] = typer.Option(None, help="Stop after this many ticks."),
    warehouse: Optional[str] = typer.Option(None, help="chdb:///abs/path or http://host:8123 (env TAPEFLOW_WAREHOUSE)."),
    seed: int = typer.Option(7, help="Synthetic feed seed."),
    run_id: Optional[str] = typer.Option(None, help="Run id stored with every row; default run-<UTC time>."),
    recovery_dir: Optional[Path] = typer.Option(
        None, help="Bytewax recovery directory: resume a stopped run. With --brokers: the root of the runs' stage "
        "folders (<root>/<prefix or default>/<run id>/<stage>; default data/recovery)."),
    no_raw: bool = typer.Option(False, "--no-raw", help="Do not land md.raw ticks in the warehouse."),
    no_trading: bool = typer.Option(False, "--no-trading", help="Market data only: no signals, orders or P&L."),
    strategy: list[str] = typer.Option(
        ["baseline"], help="SPEC[=CAPITAL]: baseline, lightgbm (the registry's active model) or package.module:Class "
        "(a plug-in, see strategies/base.py); repeat for several strategies, each with its capital fraction."),
    strategy_config: list[str] = typer.Option(
        [], help="TOML config of a strategy: one per --strategy in the same order ('-': defaults), or none."),
    model: str = typer.Option("lightgbm", help="Model name in the registry, for --strategy lightgbm."),
    registry: Path = typer.Option(Path("data/models"), help="Model registry directory."),
    progress_interval: float = typer.Option(1.0, help="Seconds between progress lines."),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="Do not serve the dashboard."),
    dashboard_port: int = typer.Option(5006, help="Dashboard port on 127.0.0.1 (0: any free port)."),
    brokers: Optional[str] = typer.Option(None, help="Run the split topology against this Kafka (host:port): "
                                           "every stage its own process."),
    prefix: str = typer.Option("", help="With --brokers: prefix of every topic name."),
    separate_trading: bool = typer.Option(
        False, "--separate-trading", help="With --brokers: risk, execution and pnl as three processes instead "
        "of the fused trading process (same results, one Kafka round trip per bar between risk and execution)."),
    chain: Optional[str] = typer.Option(
        None, help="With --brokers: market (default: normalize, bars and features chained in one process, "
        "handing batches over in memory; every topic is still produced) | none (one process per stage)."),
) -> None:
    """Run the embedded pipeline: feed -> normalize -> bars -> features -> signals -> risk ->
    simulated venue (or Alpaca) -> P&L, every stream into the warehouse."""
    from tapeflow.cli_replay import run_feed
    from flows.pipeline import (
        MarketDataConfig,
        TradingConfig,
        build_embedded_flow,
        feed_calendar,
        feed_market_streams,
        feed_universe,
        run_flow,
    )
    from flows.source import FeedLimits
    from config.control_channel import ControlChannel
    from sinks.warehouse import Warehouse
    from sinks.writer import BatchingWriter
    from tapeflow.progress import RunProgress
    from tapeflow.report import print_run_report

    from tapeflow.cli_split import given_options, option_conflicts

    conflict = option_conflicts(ctx.params, given_options(ctx))
    if conflict:
        _fail(conflict)
    overrides = {"warehouse": warehouse} if warehouse else {}
    if no_raw:
        overrides["store_raw"] = False
    settings = Settings(**overrides)
    symbol_list = tuple(s.strip() for s in symbols.split(",") if s.strip()) if symbols else None
    if venue not in ("sim", "alpaca"):
        _fail(f"unknown venue {venue!r}; venues: sim, alpaca")
    split_only = sorted({"alert_lag_growing_s", "stage_restarts_max", "stage_restarts_window_s"}
                        & settings.model_fields_set)
    if not brokers and split_only:
        _fail(f"{', '.join('TAPEFLOW_' + name.upper() for name in split_only)} govern the split topology's stage "
              "processes (their lag, their restarts); the embedded run is one process: unset them, or run with --brokers")
    if venue == "alpaca" or feed == "alpaca":
        from config.alpaca_settings import MissingAlpacaKeys, require_keys

        try:
            require_keys()
        except MissingAlpacaKeys as exc:
            _fail(str(exc))
    from tapeflow.alpaca_run import reconcile_refusal

    if refusal := reconcile_refusal(settings, adopt, venue, brokers, no_trading):
        _fail(refusal)
    if venue == "alpaca" and recovery_dir is not None and not brokers:
        _fail("--recovery-dir works with the simulated venue only: Alpaca holds the live orders; a restart "
              "reconciles with it instead")
    try:
        feed_options = dict(symbols=symbol_list, rate=rate, speed=speed, seed=seed)
        if feed == "alpaca":
            feed_options = dict(symbols=symbol_list, alpaca_feed=alpaca_feed, crypto=crypto)
        tape = run_feed(feed, path, columns, mapping, preset, feed_options, lambda line: typer.echo(line, err=True),
                        dict(brokers=brokers, max_ticks=max_ticks, venue=venue))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if not no_trading:
        try:  # every topology loads them the same way: fail now, with the reason, before anything runs
            from strategies.loading import load_strategies

            load_strategies(strategy, strategy_config, registry, model, settings.account)
        except ValueError as exc:
            _fail(str(exc))
    run_id = run_id or _default_run_id()
    if not brokers and (chain is not None or separate_trading):
        _fail(f"{'--chain' if chain is not None else '--separate-trading'} shapes the split topology's stage processes "
              "and needs --brokers; the embedded run is one fused dataflow in one process")
    if brokers:
        from tapeflow.split_run import CHAINS

        if chain is not None and chain not in CHAINS:
            _fail(f"unknown --chain {chain!r}; chains: {', '.join(CHAINS)}")
        from tapeflow.cli_split import run_split_command

        run_split_command(ctx.params, tape, settings, run_id, symbol_list)
        return
    wh = Warehouse.connect(settings.warehouse, database=settings.database)
    wh.apply_ddl()
    writer = BatchingWriter(wh, run_id, max_rows=settings.sink_max_rows, max_age_s=settings.sink_max_age_s,
                            replays=recovery_dir is not None)  # without recovery nothing replays a tick
    limits = FeedLimits(max_ticks=max_ticks, duration_s=duration)
    signal.signal(signal.SIGINT, lambda *_: limits.stop.set())
    signal.signal(signal.SIGTERM, lambda *_: limits.stop.set())
    # a replay has a universe of its own symbols; --symbols restricts the synthetic names instead
    universe = symbol_list if feed in ("replay", "alpaca") else None
    config = MarketDataConfig.from_settings(settings, universe)
    trading = None
    if not no_trading:
        trading = TradingConfig.from_settings(settings, feed_universe(tape), feed_market_streams(tape), feed_calendar(tape))
        try:  # fail now, with the reason, rather than inside the dataflow
            trading = trading.with_strategies(strategy, strategy_config, str(registry), model)
        except ValueError as exc:  # a bad spec, config, registry or model says what is wrong
            _fail(str(exc))
    control = ControlChannel(settings.control_path)
    from tapeflow import alerting

    alerts = alerting.alert_monitor(settings, run_id)
    alerting.watch_feed(tape, alerts)
    metrics = None
    if settings.metrics_port is not None:
        from sinks.metrics import RecordMetrics, serve

        serve(settings.metrics_port)
        metrics = RecordMetrics()
        typer.echo(f"metrics on http://127.0.0.1:{settings.metrics_port}/metrics", err=True)
    live_venue, reconciler = _start_alpaca_venue(settings, live, alerts, adopt) if venue == "alpaca" and trading is not None else (None, None)
    dashboard = None
    if not no_dashboard:
        from tapeflow.cli_dashboard import serve_alongside_run

        dashboard = serve_alongside_run(wh, settings, control, port=dashboard_port, run_id=run_id)
        typer.echo(f"dashboard at {dashboard.url}", err=True)
    progress = RunProgress(progress_interval)
    typer.echo(
        f"tapeflow run {run_id}: feed={feed} warehouse={redact_url(settings.warehouse)} database={settings.database} "
        f"control={settings.control_path}",
        err=True,
    )
    progress.start()
    try:
        try:
            flow = build_embedded_flow(
                config, tape, writer, progress, limits, resumable=recovery_dir is not None, trading=trading,
                control=control, venue=live_venue, alerts=alerts, metrics=metrics,
            )
            run_flow(flow, settings.epoch_interval_s, recovery_dir)
        finally:
            progress.stop()
        print_run_report(wh, run_id, progress, trading=trading is not None)
        if alerts.alerts:
            typer.echo(f"alerts raised: {len(alerts.alerts)} (control table, kind 'alert'; "
                       f"{'posted to ' + alerts.notifier.host if alerts.notifier else 'no webhook configured'})")
    finally:
        alerting.close(alerts)
        if dashboard is not None:
            dashboard.stop()
        if reconciler is not None:
            reconciler.stop()
        if live_venue is not None:
            live_venue.stop()


def _start_alpaca_venue(settings: Settings, live: bool, alerts=None, adopt: bool = False):
    """Alpaca paper trading (live only with --live), reconciled at start (--adopt takes its positions
    into the ledger) and every TAPEFLOW_RECONCILE_INTERVAL_S seconds: tapeflow/alpaca_run.py."""
    from tapeflow.alpaca_run import start_alpaca_venue

    return start_alpaca_venue(settings, live, alerts, adopt=adopt, say=lambda line: typer.echo(line, err=True))


@app.command()
def query(
    sql: str = typer.Argument(..., help="SQL to run against the warehouse database."),
    warehouse: Optional[str] = typer.Option(None, help="Warehouse URL (env TAPEFLOW_WAREHOUSE)."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON lines."),
) -> None:
    """Print the result of a query against the warehouse."""
    from sinks.warehouse import Warehouse

    settings = Settings(**({"warehouse": warehouse} if warehouse else {}))
    wh = Warehouse.connect(settings.warehouse, database=settings.database)
    try:
        columns, rows = wh.query(sql)
    except Exception as exc:  # the engine's message says what is wrong with the SQL
        _fail(f"query failed: {exc}")
    if as_json:
        for row in rows:
            typer.echo(json.dumps(dict(zip(columns, row)), default=str))
        return
    from tapeflow.report import format_table

    typer.echo(format_table(columns, rows))


@app.command()
def report(
    run_id: Optional[str] = typer.Option(None, help="The run to report; default: the latest run in the warehouse."),
    warehouse: Optional[str] = typer.Option(None, help="Warehouse URL (env TAPEFLOW_WAREHOUSE)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the report as a page (equity, drawdown, "
                                        "P&L by strategy and symbol, latency) with PNG charts in <name>_charts/."),
) -> None:
    """Print a past run's summary (orders, fills, rejects, positions, P&L, Sharpe, latency) from the warehouse."""
    from sinks.warehouse import Warehouse
    from tapeflow.report import print_run_report

    settings = Settings(**({"warehouse": warehouse} if warehouse else {}))
    wh = Warehouse.connect(settings.warehouse, database=settings.database)
    wh.apply_ddl()
    if run_id is None:
        latest = wh.query("SELECT run_id FROM md_raw GROUP BY run_id ORDER BY max(ts_written) DESC LIMIT 1").rows
        if not latest:
            _fail(f"no runs in {redact_url(settings.warehouse)} (database {settings.database}); start one with `tapeflow run`")
        run_id = latest[0][0]
    known = wh.query("SELECT count() FROM md_trades WHERE run_id = {r:String}", {"r": run_id}).scalar()
    if not known:
        _fail(f"run {run_id!r} has no rows in {redact_url(settings.warehouse)} (database {settings.database})")
    print_run_report(wh, run_id)
    if html is not None:
        from tapeflow.report_html import write_report

        if not html.parent.is_dir():
            _fail(f"--html {html}: folder {html.parent} does not exist")
        page, charts = write_report(wh, run_id, html)
        typer.echo(f"report written to {page} (charts: {', '.join(str(c) for c in charts)})")


from tapeflow.cli_dashboard import dashboard as _dashboard_command  # noqa: E402
from tapeflow.cli_flows import flow as _flow_command  # noqa: E402
from tapeflow.cli_models import register as _register_model_commands  # noqa: E402

from tapeflow.cli_kafka import kafka_app  # noqa: E402

from tapeflow.cli_users import users_app  # noqa: E402

app.add_typer(kafka_app)  # broker, topics, feed
app.add_typer(users_app, name="users")
app.command("flow")(_flow_command)
app.command("dashboard")(_dashboard_command)
_register_model_commands(app)

@app.command()
def lag(
    brokers: str = typer.Option(..., help="Kafka bootstrap servers."),
    recovery_root: Path = typer.Option(Path("data/recovery"), help="Folder holding the runs' stage recovery folders."),
    prefix: Optional[str] = typer.Option(None, help="The runs' topic prefix (default: any)."),
    run_id: Optional[str] = typer.Option(None, help="The run (default: the one whose stages wrote last)."),
) -> None:
    """Each split-topology stage's lag: its recovery offsets against the topics' end offsets."""
    from topics.lag import stage_lag
    from tapeflow.report import format_table
    from tapeflow.split_run import stage_folders

    folder, dirs = stage_folders(recovery_root, prefix, run_id)
    if not dirs:
        _fail(f"no stage recovery directories under {folder}; `tapeflow run --brokers` keeps them in "
              f"{recovery_root}/<prefix or default>/<run id>/<stage>")
    typer.echo(f"stages of {folder}", err=True)
    rows = stage_lag(brokers, dirs)
    typer.echo(format_table(["stage", "topic", "partition", "offset", "end", "lag"],
                            [(r.stage, r.topic, r.partition, r.offset, r.end, r.lag) for r in rows]))
    totals: dict[str, int] = {}
    for r in rows:
        totals[r.stage] = totals.get(r.stage, 0) + r.lag
    typer.echo("total lag: " + ", ".join(f"{stage} {n:,}" for stage, n in totals.items()))


control_app = typer.Typer(no_args_is_help=True, help="Send an operator command to a running pipeline: the embedded "
                          "one's spool, or with --brokers the split stages' control topic.")
app.add_typer(control_app, name="control")

from tapeflow.cli_control import BROKERS_OPTION, PREFIX_OPTION  # noqa: E402


def _send_control(kind, name: str = "", value: float = 0.0, target: str = "global", *,
                  brokers: Optional[str] = None, prefix: str = "", detail: str = "") -> None:
    """The one route of every ``tapeflow control`` command (tapeflow/cli_control.py decides it)."""
    from tapeflow.cli_control import send_control

    command, where = send_control(kind, name=name, value=value, target=target, detail=detail, brokers=brokers,
                                  prefix=prefix)
    typer.echo(f"sent {command.kind.value} {command.name} {command.value:g} to {target} as {command.issued_by} "
               f"via {where}")


@control_app.command("kill-switch")
def kill_switch(
    state: str = typer.Argument(..., help="on | off"),
    account: str = typer.Option("global", help="An account, or global for every account."),
    flatten: bool = typer.Option(False, "--flatten", help="With on: also cancel every working order and close every position."),
    brokers: Optional[str] = BROKERS_OPTION,
    prefix: str = PREFIX_OPTION,
) -> None:
    """Kill switch: `on` denies every new order (cancels still pass); `off` lifts it."""
    from schemas import ControlKind

    if state not in ("on", "off"):
        _fail(f"kill-switch takes on or off, not {state!r}")
    if flatten and state != "on":
        _fail("--flatten goes with `kill-switch on` (stop, then unwind); to unwind alone use `tapeflow control flatten`")
    _send_control(ControlKind.KILL_SWITCH, value=1.0 if state == "on" else 0.0, target=account, brokers=brokers,
                  prefix=prefix)
    if flatten:
        _send_control(ControlKind.FLATTEN, target=account, detail="kill switch on --flatten from the CLI",
                      brokers=brokers, prefix=prefix)


@control_app.command("limit")
def set_limit(
    name: str = typer.Argument(..., help="A risk limit, e.g. max_order_notional."),
    value: float = typer.Argument(..., help="Its new value."),
    account: str = typer.Option("global", help="An account, or global."),
    brokers: Optional[str] = BROKERS_OPTION,
    prefix: str = PREFIX_OPTION,
) -> None:
    """Change one pre-trade risk limit of a running pipeline."""
    from trading.risk_limits import RiskLimits
    from schemas import ControlKind

    if name not in RiskLimits.limit_names():
        _fail(f"unknown limit {name!r}; limits: {', '.join(RiskLimits.limit_names())}")
    _send_control(ControlKind.SET_LIMIT, name=name, value=value, target=account, brokers=brokers, prefix=prefix)


from tapeflow.cli_ops import register as _register_ops  # noqa: E402

_register_ops(control_app, _send_control)  # cancel-all, flatten, resume


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
