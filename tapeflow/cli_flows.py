"""``tapeflow flow STAGE``: one stage of the split topology as its own process over Kafka."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Optional

import typer

from config.settings import Settings

STRATEGY_STAGES = ("signals", "trading", "risk", "pnl")  # the stages that build or size strategies
SINK_NICENESS = 10  # added to the sink's CPU niceness (lower priority); see flow()

DESK_STAGES = ("trading", "risk", "execution", "pnl")
# The stages each option shapes; given to any other stage it would be ignored, so it is refused.
# (An option not named here applies to every stage.)
STAGE_OPTIONS: dict[str, tuple[str, ...]] = {
    "symbols": ("market", "normalize", "signals", *DESK_STAGES),
    "market_streams": DESK_STAGES,
    "silent_after_s": ("signals", *DESK_STAGES),
    # the signals stage builds the strategies; the desk's stages size, limit and value them
    "strategy": STRATEGY_STAGES,
    "strategy_config": STRATEGY_STAGES,
    "model": STRATEGY_STAGES,
    "registry": STRATEGY_STAGES,
    "warehouse": ("sink",),
    "run_id": ("sink",),
    "no_raw": ("sink",),
    "dashboard_port": ("sink",),
    "members": ("sink",),
    "venue": ("trading",),
    "live": ("trading",),
}

# The settings (config/settings.py, env TAPEFLOW_<NAME>) each stage reads; docker-compose.yml gives a
# stage service only these (tests/unit/test_compose.py checks it), so no setting is passed for nothing.
_MARKET_SETTINGS = {"normalize": ("lateness_ms", "price_band_pct", "max_future_s"),
                    "bars": ("lateness_ms", "bar_intervals"), "features": ("feature_interval",)}
_DESK_SETTINGS = ("account", "capital", "lateness_ms", "feature_interval", "execution")
_EVERY_STAGE = ("epoch_interval_s", "metrics_port", "log_format")  # every process: its epoch, /metrics, its logs
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    **{stage: (*_EVERY_STAGE, *names) for stage, names in _MARKET_SETTINGS.items()},
    "market": (*_EVERY_STAGE, *dict.fromkeys(n for names in _MARKET_SETTINGS.values() for n in names)),
    "signals": (*_EVERY_STAGE, "account", "feature_interval"),
    **{stage: (*_EVERY_STAGE, *_DESK_SETTINGS, "calendar") for stage in DESK_STAGES},
    # control_path: the spool of the dashboard's operator commands, with --dashboard-port; the alert
    # settings: the sink's rules watch every record that lands (sinks/alerts.py)
    "sink": (*_EVERY_STAGE, "warehouse", "database", "store_raw", "sink_max_rows", "sink_max_age_s", "account",
             "control_path", "alert_webhook_url", "alert_dead_letters_per_minute"),
}


def flow(
    ctx: typer.Context,
    stage: str = typer.Argument(
        ..., help="normalize | bars | features | signals | trading | risk | execution | pnl | sink "
        "(trading = risk + execution + pnl in one process)"),
    brokers: str = typer.Option(..., help="Kafka bootstrap servers, host:port[,host:port]."),
    prefix: str = typer.Option("", help="Prefix of every topic name (several pipelines on one broker)."),
    workers: int = typer.Option(1, min=1, help="Bytewax workers in this process."),
    addresses: Optional[str] = typer.Option(
        None, help="Run the stage as a Bytewax cluster: host:port of every process, ';'-separated, the same list "
        "in each (Bytewax's -a). Each process also needs --process-id."),
    process_id: Optional[int] = typer.Option(None, "--process-id", min=0,
                                             help="This process's index in --addresses (Bytewax's -i)."),
    recovery_dir: Optional[Path] = typer.Option(None, help="Bytewax recovery directory: resume from its snapshot."),
    until_end: bool = typer.Option(False, "--until-end", help="Stop at the end of the input topics (replays)."),
    symbols: Optional[str] = typer.Option(
        None, help="Universe (comma-separated): normalize dead-letters other symbols; the signals and desk wait for these."),
    market_streams: str = typer.Option("trade,quote", help="What the feed delivers per symbol: trade, quote or both."),
    silent_after_s: float = typer.Option(
        30.0, help="Event-time seconds a symbol may trail the others before the signals and desk stop waiting "
        "for it. Raise it for replays faster than real time (partitions are consumed at different paces)."),
    warehouse: Optional[str] = typer.Option(None, help="Warehouse URL for the sink stage."),
    run_id: str = typer.Option("split", help="Run id the sink stores with every row."),
    strategy: list[str] = typer.Option(
        ["baseline"], help="As `tapeflow run --strategy` (read by the signals, trading, risk and pnl stages)."),
    strategy_config: list[str] = typer.Option([], help="As `tapeflow run --strategy-config`."),
    registry: Path = typer.Option(Path("data/models"), help="Model registry directory."),
    model: str = typer.Option("lightgbm", help="Model name in the registry, for --strategy lightgbm."),
    no_raw: bool = typer.Option(False, "--no-raw", help="sink: do not land md.raw (also TAPEFLOW_STORE_RAW=false)."),
    dashboard_port: Optional[int] = typer.Option(
        None, help="sink: serve the dashboard on 127.0.0.1 at this port (0: any free port) over the sink's warehouse."),
    venue: str = typer.Option("sim", help="trading: sim (the simulated exchange) | alpaca (paper trading, "
                              "reconciled at start; no --recovery-dir: Alpaca holds the orders)."),
    live: bool = typer.Option(False, "--live", help="trading, with --venue alpaca: live (real-money) trading."),
    start_offsets: Optional[Path] = typer.Option(
        None, help="A split run's run-start.json: where partitions without a recovery snapshot start "
        "(default: their beginning)."),
    members: Optional[int] = typer.Option(
        None, min=1, help="sink: run the consumer-group sink (Quix Streams) instead of the Bytewax one, with this "
        "many members (threads) here; scale over processes with more `tapeflow flow sink --members 1` against a "
        "ClickHouse server. No dashboard, metrics or alerts (the Bytewax sink's)."),
) -> None:
    """Run one stage of the split pipeline, reading and writing Kafka topics. At the end of a finite
    tape (end-of-tape markers on every partition of its inputs) it flushes as an embedded run ends,
    marks every partition of its outputs and exits; the sink exits once it has landed the tape."""
    from topics.kafka_records import KafkaEndpoint
    from flows.pipeline import MarketDataConfig, TradingConfig, run_flow
    from flows.split import SEPARATE_TRADING, STAGES, SplitConfig, build_stage_flow, pass_end_of_tape, tape_ends

    cluster = [a.strip() for a in addresses.split(";") if a.strip()] if addresses else None
    if (cluster is None) != (process_id is None):
        typer.secho("error: --addresses and --process-id go together: every process of a cluster gets the same "
                    "--addresses and its own --process-id", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if cluster is not None and process_id >= len(cluster):
        typer.secho(f"error: --process-id {process_id} is not an index of the {len(cluster)} --addresses",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if stage not in STAGES:
        _fail(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    misplaced = [name for name, stages in STAGE_OPTIONS.items() if stage not in stages and _given(ctx, name)]
    if misplaced:
        _fail(f"the {stage} stage does not use " + ", ".join(f"--{n.replace('_', '-')} (used by: "
              f"{', '.join(STAGE_OPTIONS[n])})" for n in misplaced))
    if venue not in ("sim", "alpaca"):
        _fail(f"unknown venue {venue!r}; venues: sim, alpaca")
    if live and venue != "alpaca":
        _fail("--live trades real money at Alpaca: give it with --venue alpaca")
    if venue == "alpaca":
        from config.alpaca_settings import MissingAlpacaKeys, require_keys

        try:
            require_keys()
        except MissingAlpacaKeys as exc:
            _fail(str(exc))
        if recovery_dir is not None:
            _fail("--recovery-dir works with the simulated venue only: Alpaca holds the live orders; a restart "
                  "reconciles with it instead")
        if until_end:
            _fail("--until-end ends a replay of complete topics; with --venue alpaca the stage also waits for "
                  "Alpaca's execution reports, which have no end: stop it with SIGTERM")
    if "lightgbm" not in {spec.split("=", 1)[0].strip() for spec in strategy} and (
            _given(ctx, "model") or _given(ctx, "registry")):
        _fail("--model and --registry choose the LightGBM model: give them with --strategy lightgbm")
    if until_end and stage in SEPARATE_TRADING:
        _fail(f"the {stage} stage reads the output of the other trading stages live, so it has no "
              "end of input: run it without --until-end and stop it once `tapeflow lag` shows it caught up "
              "(or run the fused `trading` stage with --until-end)")
    settings = Settings(**({"warehouse": warehouse} if warehouse else {}))
    if members is not None:  # the opt-in consumer-group sink (tapeflow/cli_sink.py)
        from sinks.thread_priority import lower_process_priority
        from tapeflow import cli_sink
        from tapeflow.cli_split import given_options

        refusal = cli_sink.group_sink_refusal(given_options(ctx), settings.model_fields_set)
        if refusal:
            _fail(refusal)
        typer.echo(f"sink priority: {lower_process_priority(SINK_NICENESS)}", err=True)
        cli_sink.run_group_sink(brokers=brokers, prefix=prefix, warehouse_url=settings.warehouse,
                                database=settings.database, run_id=run_id, members=members, until_end=until_end,
                                max_rows=settings.sink_max_rows, commit_interval_s=settings.sink_max_age_s,
                                store_raw=settings.store_raw and not no_raw)
        return
    universe = tuple(s.strip() for s in symbols.split(",") if s.strip()) if symbols else None
    market = MarketDataConfig.from_settings(settings, universe)
    trading = TradingConfig.from_settings(
        settings, universe, tuple(k.strip() for k in market_streams.split(",") if k.strip())
    )
    try:  # fail now, with the reason (a bad spec, config, registry or model), rather than inside the dataflow
        trading = trading.with_strategies(strategy, strategy_config, str(registry), model)
    except ValueError as exc:
        _fail(str(exc))
    if stage == "signals" and trading.external_strategies:
        _fail(f"--strategy external:{trading.external_strategies[0]} publishes its signals from its own app; the "
              "signals stage computes built-in and plug-in strategies only: start the app instead of this stage")
    if recovery_dir is not None:
        from topics.origin import StaleRecovery, claim, current_origin_when_reachable

        try:
            claim(recovery_dir, current_origin_when_reachable(brokers, prefix, log=lambda m: typer.echo(m, err=True)))
        except StaleRecovery as exc:
            _fail(str(exc))
        except TimeoutError as exc:  # not exit 2: the broker may come back, and a supervised stage is restarted
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
    starts = ()
    if start_offsets is not None:
        from topics.origin import read_start_offsets

        starts = tuple((t, p, o) for (t, p), o in sorted(read_start_offsets(start_offsets).items()))
    # Complete topics are drained partition by partition: no symbol is ever "silent" then, and no
    # symbol's features are "late" to a cross-section.
    trading = dataclasses.replace(
        trading,
        desk=trading.desk.model_copy(update={"silent_after_ns": 10**18 if until_end else int(silent_after_s * 1e9)}),
        max_wait_bars=10**9 if until_end else max(1, int(silent_after_s)),
    )
    store_raw = settings.store_raw and not no_raw
    cfg = SplitConfig(
        endpoint=KafkaEndpoint(tuple(brokers.split(",")), prefix, tail=not until_end, start_offsets=starts),
        normalize=market.normalize,
        bar_intervals=market.bar_intervals,
        lateness_ns=market.lateness_ns,
        feature_interval=market.feature_interval,
        trading=trading,
        tape=tape_ends(stage, store_raw),  # a finite tape's end ends the stage (topics/end_of_tape.py)
        store_raw=store_raw,
    )
    wh = writer = alerts = dashboard = None
    if stage == "sink":
        from sinks.thread_priority import lower_process_priority
        from sinks.warehouse import Warehouse
        from sinks.writer import BatchingWriter

        # The warehouse is throughput work that lands in bursts (a batch per epoch, ClickHouse's
        # merges after it): at a lower CPU priority it cannot hold up the stages on the way from
        # tick to order when they share the cores (a laptop, this project's default). Its session's
        # autogroup too: Linux shares the cores between sessions before it looks at nice values.
        priority = lower_process_priority(SINK_NICENESS)
        typer.echo(f"sink priority: {priority}", err=True)
        wh = Warehouse.connect(settings.warehouse, database=settings.database)
        wh.apply_ddl()
        writer = BatchingWriter(wh, run_id, max_rows=settings.sink_max_rows, max_age_s=settings.sink_max_age_s)
        from tapeflow.alerting import alert_monitor

        alerts = alert_monitor(settings, run_id)  # every record of the run passes here: the rules watch it
        if dashboard_port is not None:
            # chDB is one process's: the dashboard reads the warehouse through the sink's own engine
            from config.control_channel import ControlChannel
            from tapeflow.cli_dashboard import serve_alongside_run

            dashboard = serve_alongside_run(wh, settings, ControlChannel(settings.control_path), port=dashboard_port,
                                            run_id=run_id, brokers=brokers, prefix=prefix)
            typer.echo(f"dashboard at {dashboard.url}", err=True)
    metrics = None
    if settings.metrics_port is not None:
        from sinks.metrics import RecordMetrics, serve

        serve(settings.metrics_port)
        metrics = RecordMetrics() if stage == "sink" else None
    live_venue = reconciler = None
    if venue == "alpaca":
        from tapeflow.cli import _start_alpaca_venue  # the embedded run's start: keys, reconciliation

        live_venue, reconciler = _start_alpaca_venue(settings, live)
    # SIGTERM ends the process like Ctrl-C: Bytewax stops at the next epoch, the recovery snapshot stays.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    typer.echo(f"tapeflow flow {stage}: brokers={brokers} prefix={prefix!r} workers={workers} "
               f"recovery={recovery_dir} until_end={until_end}"
               + (f" cluster process {process_id} of {cluster}" if cluster else ""), err=True)
    try:
        run_flow(build_stage_flow(stage, cfg, writer, alerts=alerts, metrics=metrics, venue=live_venue),
                 settings.epoch_interval_s, recovery_dir, workers=workers, addresses=cluster,
                 process_id=process_id or 0)
        if writer is not None:
            writer.flush()  # before the sink says it has landed the tape
        ended = pass_end_of_tape(stage, cfg)
        if ended:
            typer.echo(f"tapeflow flow {stage}: {ended}", err=True)
    except KeyboardInterrupt:
        typer.echo(f"tapeflow flow {stage}: stopped", err=True)
    except Exception as exc:
        if not _interrupted(exc):
            raise
        # Bytewax wraps an interrupt that lands inside a step in its own error: still a stop.
        typer.echo(f"tapeflow flow {stage}: stopped", err=True)
    finally:
        if writer is not None:
            writer.flush()
        if alerts is not None:
            from tapeflow.alerting import close

            close(alerts)
        if dashboard is not None:
            dashboard.stop()
        if reconciler is not None:
            reconciler.stop()
        if live_venue is not None:
            live_venue.stop()
        if wh is not None:  # chDB's engine is one folder's per process until closed
            wh.close()


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _given(ctx: typer.Context, name: str) -> bool:
    from tapeflow.cli_split import given_options

    return name in given_options(ctx)


def _interrupted(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
