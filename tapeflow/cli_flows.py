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


def flow(
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
    symbols: Optional[str] = typer.Option(None, help="Universe (comma-separated) the signals and desk wait for."),
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
        typer.secho(f"error: unknown stage {stage!r}; stages: {', '.join(STAGES)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if until_end and stage in SEPARATE_TRADING:
        typer.secho(f"error: the {stage} stage reads the output of the other trading stages live, so it has no "
                    "end of input: run it without --until-end and stop it once `tapeflow lag` shows it caught up "
                    "(or run the fused `trading` stage with --until-end)", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    settings = Settings(**({"warehouse": warehouse} if warehouse else {}))
    universe = tuple(s.strip() for s in symbols.split(",") if s.strip()) if symbols else None
    market = MarketDataConfig.from_settings(settings)
    trading = TradingConfig.from_settings(
        settings, universe, tuple(k.strip() for k in market_streams.split(",") if k.strip())
    )
    # Complete topics are drained partition by partition: no symbol is ever "silent" then, and no
    # symbol's features are "late" to a cross-section.
    trading = dataclasses.replace(
        trading,
        desk=trading.desk.model_copy(update={"silent_after_ns": 10**18 if until_end else int(silent_after_s * 1e9)}),
        max_wait_bars=10**9 if until_end else max(1, int(silent_after_s)),
    )
    given = [name for name, value, default in (
        ("--strategy", strategy, ["baseline"]), ("--strategy-config", strategy_config, []),
        ("--registry", registry, Path("data/models")), ("--model", model, "lightgbm")) if value != default]
    if given and stage not in STRATEGY_STAGES:
        typer.secho(f"error: {', '.join(given)} configure the strategies of the {', '.join(STRATEGY_STAGES)} stages; "
                    f"the {stage} stage has none", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        trading = trading.with_strategies(strategy, strategy_config, str(registry), model)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    cfg = SplitConfig(
        endpoint=KafkaEndpoint(tuple(brokers.split(",")), prefix, tail=not until_end),
        normalize=market.normalize,
        bar_intervals=market.bar_intervals,
        lateness_ns=market.lateness_ns,
        feature_interval=market.feature_interval,
        trading=trading,
        tape=tape_ends(stage),  # a finite tape's end ends the stage (topics/end_of_tape.py)
    )
    writer = alerts = None
    if stage == "sink":
        from sinks.warehouse import Warehouse
        from sinks.writer import BatchingWriter

        # The warehouse is throughput work that lands in bursts (a batch per epoch, ClickHouse's
        # merges after it): at a lower CPU priority it cannot hold up the stages on the way from
        # tick to order when they share the cores (a laptop, this project's default).
        os.nice(SINK_NICENESS)
        wh = Warehouse.connect(settings.warehouse, database=settings.database)
        wh.apply_ddl()
        writer = BatchingWriter(wh, run_id, max_rows=settings.sink_max_rows, max_age_s=settings.sink_max_age_s)
        from tapeflow.alerting import alert_monitor

        alerts = alert_monitor(settings, run_id)  # every record of the run passes here: the rules watch it
    metrics = None
    if settings.metrics_port is not None:
        from sinks.metrics import RecordMetrics, serve

        serve(settings.metrics_port)
        metrics = RecordMetrics() if stage == "sink" else None
    # SIGTERM ends the process like Ctrl-C: Bytewax stops at the next epoch, the recovery snapshot stays.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    typer.echo(f"tapeflow flow {stage}: brokers={brokers} prefix={prefix!r} workers={workers} "
               f"recovery={recovery_dir} until_end={until_end}"
               + (f" cluster process {process_id} of {cluster}" if cluster else ""), err=True)
    try:
        run_flow(build_stage_flow(stage, cfg, writer, alerts=alerts, metrics=metrics), settings.epoch_interval_s,
                 recovery_dir, workers=workers, addresses=cluster, process_id=process_id or 0)
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



def _interrupted(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
