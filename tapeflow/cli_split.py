"""``tapeflow run`` options that cannot apply, and ``tapeflow run --brokers``: the split run the options ask for.

No option is silently ignored (DESIGN §2): :func:`option_conflicts` names an option given where it
cannot change anything (in either topology), and :func:`split_run_for` turns every option of
``tapeflow run`` into the stage processes of a :class:`tapeflow.split_run.SplitRun` (or refuses it
with a reason). README "Split topology" lists what each option does in split mode.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import typer

from config.settings import Settings

DEFAULT_RECOVERY_ROOT = Path("data/recovery")


class Refused(ValueError):
    """An option (or combination) the run cannot honour; the message says why and what to do."""


def given_options(ctx: typer.Context) -> set[str]:
    """Parameters set on the command line or through their environment variable."""
    from typer._click.core import ParameterSource  # typer vendors click

    return {name for name in ctx.params
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}


def _flags(names) -> str:
    return "/".join("--" + n.replace("_", "-") for n in names)


def _flags_verb(names, plural: str, singular: str) -> str:
    return f"{_flags(names)} {plural if len(names) > 1 else singular}"


def option_conflicts(params: dict[str, Any], given: set[str]) -> str | None:
    """Why some option of ``tapeflow run`` would change nothing with the others given (None: all apply)."""
    feed = params["feed"]
    if feed != "synthetic" and "seed" in given:
        return f"--seed seeds the synthetic feed; a {feed} tape has no seed"
    alpaca_data = sorted({"alpaca_feed", "crypto"} & given)
    if feed != "alpaca" and alpaca_data:
        return f"{_flags_verb(alpaca_data, 'choose', 'chooses')} Alpaca market data: give them with --feed alpaca"
    unpaced = sorted({"path", "rate", "speed"} & given)
    if feed == "alpaca" and unpaced:
        return f"{_flags_verb(unpaced, 'read or pace', 'reads or paces')} a recorded tape; the Alpaca feed is live"
    if params["live"] and params["venue"] != "alpaca":
        return "--live trades real money at Alpaca: give it with --venue alpaca"
    trading = sorted({"strategy", "strategy_config", "model", "registry", "venue", "live"} & given)
    if params["no_trading"] and trading:
        return f"{_flags_verb(trading, 'choose', 'chooses')} how to trade, and --no-trading runs no signals or orders"
    model = sorted({"model", "registry"} & given)
    kinds = {spec.split("=", 1)[0].strip() for spec in params["strategy"]}
    if "lightgbm" not in kinds and model:
        return f"{_flags_verb(model, 'choose', 'chooses')} the LightGBM model: give them with --strategy lightgbm"
    if params["no_dashboard"] and "dashboard_port" in given:
        return "--dashboard-port is the dashboard's port, and --no-dashboard serves none"
    from tapeflow.cli_external import external_refusal

    if refusal := external_refusal(params):
        return refusal
    if not params["brokers"] and "prefix" in given:
        return "--prefix names the split topology's Kafka topics and needs --brokers"
    if params["brokers"]:
        if params["separate_trading"] and params["no_trading"]:
            return "--separate-trading splits the trading stage, and --no-trading runs none"
        if params["venue"] == "alpaca" and params["separate_trading"]:
            return ("--venue alpaca routes orders from the fused trading stage; the separate execution stage "
                    "simulates fills only: drop --separate-trading")
    return None


def split_run_for(params: dict[str, Any], tape, settings: Settings, run_id: str,
                  symbols: tuple[str, ...] | None):
    """The :class:`SplitRun` for ``tapeflow run --brokers`` with ``params`` (the command's options by
    name). Raises :class:`Refused` for a LightGBM model the registry cannot serve."""
    from flows.pipeline import feed_calendar, feed_market_streams, feed_universe
    from strategies.loading import external_strategies, strategy_options
    from tapeflow.split_run import SplitRun, run_folder
    from tapeflow.supervisor import RestartPolicy

    # `tapeflow run` has loaded the strategies already (a bad spec or model is refused there)
    lightgbm = "lightgbm" in {spec.split("=", 1)[0].strip() for spec in params["strategy"]}
    strategies = () if params["no_trading"] else strategy_options(
        params["strategy"], params["strategy_config"], *((params["registry"], params["model"]) if lightgbm else ()))
    # a replay's (or Alpaca's) universe is filtered by normalize, as embedded; synthetic names are the feed's
    universe = symbols if params["feed"] in ("replay", "alpaca") and symbols else feed_universe(tape)
    # Faster than real time, partitions drift apart in event time: wait longer for a trailing symbol.
    speed = getattr(tape, "speed", 1.0)
    root = params["recovery_dir"] or DEFAULT_RECOVERY_ROOT
    prefix = params["prefix"]
    return SplitRun(
        params["brokers"], prefix, run_folder(root, prefix, run_id), run_id, settings.warehouse, universe,
        feed_market_streams(tape), Path("data/logs") / run_id, 30.0 if 0 < speed <= 1.0 else 3_600.0,
        params["separate_trading"], params["chain"] or "market", strategy_options=strategies,
        trading=not params["no_trading"], signals_stage=not external_strategies(params["strategy"]),
        store_raw=settings.store_raw,
        dashboard_port=None if params["no_dashboard"] else params["dashboard_port"], venue=params["venue"],
        live=params["live"], metrics_port=settings.metrics_port, calendar=settings.calendar or feed_calendar(tape),
        restart_policy=RestartPolicy(max_restarts=settings.stage_restarts_max,
                                     window_s=settings.stage_restarts_window_s),
    )


def run_split_command(params: dict[str, Any], tape, settings: Settings, run_id: str,
                      symbols: tuple[str, ...] | None) -> None:
    """``tapeflow run --brokers``: stage processes over Kafka; the summary from the sink's warehouse."""
    try:
        split = split_run_for(params, tape, settings, run_id, symbols)
    except Refused as exc:
        _fail(str(exc))
    from tapeflow.cli_external import signals_line

    if line := signals_line(params):
        typer.echo(line, err=True)
    execute_split(tape, split, params["max_ticks"], params["duration"], params["progress_interval"], settings)


def execute_split(tape, split, max_ticks: int | None, duration: float | None, progress_interval: float,
                  settings: Settings) -> None:
    from sinks.warehouse import Warehouse
    from tapeflow.report import print_run_report
    from tapeflow.split_run import run_split
    from topics.origin import StaleRecovery

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if split.dashboard_port is not None:
        where = f"http://127.0.0.1:{split.dashboard_port}" if split.dashboard_port else "its log"
        typer.echo(f"dashboard: served by the sink stage at {where} (over the sink's warehouse)", err=True)
    typer.echo(f"recovery folder of run {split.run_id}: {split.recovery_root}", err=True)
    failed = None
    try:
        # a stage that dies is restarted; one that spends its restart budget (or refuses its recovery
        # folder: exit 2, which no restart mends) fails the run with exit 1, after the report
        run_split(tape, split, max_ticks, stop, progress_interval, duration, settings.alert_lag_growing_s)
    except StaleRecovery as exc:
        _fail(str(exc))
    except typer.Exit as exc:
        failed = exc
    wh = Warehouse.connect(settings.warehouse, database=settings.database)  # the sink has let go of it
    print_run_report(wh, split.run_id, trading=split.trading)
    if failed is not None:
        raise failed


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
