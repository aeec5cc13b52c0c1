"""``tapeflow train`` and ``tapeflow models list|show|activate|rollback``.

Registered on the main app by ``register(app)`` (one line in ``tapeflow/cli.py``).
"""

from __future__ import annotations

import fnmatch
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from config.settings import Settings
from tapeflow.cli_control import BROKERS_OPTION, PREFIX_OPTION

DEFAULT_REGISTRY = Path("data/models")
models_app = typer.Typer(no_args_is_help=True, help="The model registry: list, show, activate, roll back.")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _is_bar_file(path: Optional[Path]) -> bool:
    from feeds.replay_presets import BAR_FILE_PATTERNS

    return path is not None and any(fnmatch.fnmatch(path.name, p) for p in BAR_FILE_PATTERNS)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def train(
    feed: str = typer.Option("synthetic", help="synthetic | replay (tick file, or a 1-minute bar file) | bars"),
    path: Optional[Path] = typer.Option(None, help="Replay file: ticks (Parquet/CSV) or 1-minute OHLCV bars."),
    seed: int = typer.Option(7, help="Synthetic feed seed."),
    max_ticks: int = typer.Option(
        1_000_000, help="Ticks to replay (synthetic, tick replay). 1M synthetic ticks are about an hour of 1 s bars: "
        "less leaves the early folds too little to learn from."),
    ticks_per_second: float = typer.Option(150.0, help="Synthetic tape density (bars per tick grow as it falls)."),
    flow_alpha: Optional[float] = typer.Option(None, help="Synthetic planted-flow strength (feed default 0.25)."),
    horizon: int = typer.Option(5, help="Label: forward log return over N bars (the synthetic flow acts over 5 s)."),
    folds: int = typer.Option(4, help="Walk-forward test folds."),
    gap: Optional[int] = typer.Option(None, help="Purge gap in bars between train and test (default: horizon)."),
    window: str = typer.Option("expanding", help="expanding | rolling training window."),
    trees: int = typer.Option(150, help="Boosting rounds."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, help="Model registry directory."),
    name: str = typer.Option("lightgbm", help="Model name in the registry."),
    pnl: bool = typer.Option(True, "--pnl/--no-pnl", help="Replay the test folds through the simulated desk."),
    cost_bps: float = typer.Option(1.0, help="Bar files: cost per unit of turnover in bp (fee + slippage)."),
    mode: str = typer.Option("edge", help="Strategy weights: edge (forecast in bp vs entry/exit) | threshold | rank."),
    entry_bps: float = typer.Option(1.5, help="Edge mode: open a name when its forecast is at least this many bp."),
    exit_bps: float = typer.Option(0.5, help="Edge mode: close a held name once its forecast is this many bp against it."),
    execution: str = typer.Option(
        "passive", help="P&L desk: passive (limit orders at the touch, re-quoted each bar) | market."),
    shuffle_labels: bool = typer.Option(False, "--shuffle-labels", help="Control: train on permuted labels."),
    register: bool = typer.Option(True, "--register/--no-register", help="Write the model to the registry."),
) -> None:
    """Train the LightGBM signal on features computed by the pipeline's own stages, evaluate it
    walk-forward (IC, rank IC, hit rate, P&L after fees) and register it."""
    from feeds import make_feed
    from market.features import WARMUP_BARS
    from flows.pipeline import MarketDataConfig, feed_calendar
    from research.evaluation import desk_pnl, evaluation_desk, fold_cross_sections, sections_close_to_close
    from strategies.lightgbm_strategy import LightGBMConfig
    from strategies.registry import ModelRegistry
    from research.training import (
        TrainConfig, bars_from_file, feature_vectors, model_metadata, tape_vectors, training_frame, vectors_frame,
        walk_forward,
    )

    try:
        cfg = TrainConfig(horizon=horizon, n_folds=folds, gap=gap, window=window, num_trees=trees,
                          seed=seed, shuffle_labels=shuffle_labels)
        strategy_config = LightGBMConfig(mode=mode, entry_bps=entry_bps, exit_bps=exit_bps)
        if execution not in ("passive", "market"):
            raise ValueError(f"--execution must be passive or market, not {execution!r}")
    except ValueError as exc:
        _fail(str(exc))
    settings = Settings()
    started = time.perf_counter()
    bars_mode = feed == "bars" or (feed == "replay" and _is_bar_file(path))
    if bars_mode:
        if path is None:
            _fail("--feed bars needs --path to a 1-minute OHLCV file")
        interval, source = "1m", f"bars:{path.name}"
        try:
            vectors = list(feature_vectors(bars_from_file(path), interval))
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        config = None
    else:
        options = {"path": path, "seed": seed}
        if feed == "synthetic":
            options.update(ticks_per_second=ticks_per_second, flow_alpha=flow_alpha, max_ticks=max_ticks)
        try:
            make_tape = lambda: make_feed(feed, **options).ticks()  # noqa: E731 - re-run for the P&L replay
            make_tape()
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
        config = MarketDataConfig.from_settings(settings)
        interval = config.feature_interval
        source = f"{feed}:{path.name if path else f'seed={seed},tps={ticks_per_second:g},alpha={flow_alpha}'}"

        def limited():
            for n, tick in enumerate(make_tape()):
                if n >= max_ticks:
                    return
                yield tick

        _say(f"replaying {feed} through normalize -> bars -> features ...")
        vectors = tape_vectors(limited(), config, lambda n: _say(f"  {n:,} feature vectors"))
    frame = training_frame(vectors_frame(vectors), cfg.horizon)
    if frame.is_empty():
        _fail(f"no labelled feature rows from {source}: the tape is too short for the {WARMUP_BARS}-bar warm-up and the label horizon")
    _say(f"{len(vectors):,} vectors, {len(frame):,} labelled rows, {frame['symbol'].n_unique()} symbols, "
         f"{_iso(frame['bar_end'].min())} .. {_iso(frame['bar_end'].max())}")
    try:
        result = walk_forward(frame, cfg, _say)
    except ValueError as exc:
        _fail(str(exc))
    o = result.overall
    typer.echo(f"out-of-sample: IC {o['ic']:+.4f}  rank IC {o['rank_ic']:+.4f}  hit rate {o['hit_rate']:.3f}  "
               f"rows {o['rows']:,}")
    pnl_rows: list[dict] = []
    if pnl:
        sections = fold_cross_sections(result, frame, interval, strategy_config)
        if bars_mode:
            pnl_rows = sections_close_to_close(sections, frame, cost_bps)
            for r in pnl_rows:
                typer.echo(f"fold {r['fold']}: close-to-close net return {r['net_return']:+.4%} "
                           f"(gross {r['gross_return']:+.4%}, cost {r['cost']:.4%}, turnover {r['turnover']:.1f})")
        else:
            calendar = settings.calendar or feed_calendar(make_feed(feed, **options))
            pnl_rows = desk_pnl(limited(), config, sections, evaluation_desk(config, execution, calendar), progress=_say)
            for r in pnl_rows:
                typer.echo(f"fold {r['fold']}: net P&L {r['net_pnl']:+,.2f} after fees {r['fees']:,.2f} "
                           f"(gross {r['gross_pnl']:+,.2f}; {r['fills']} fills, {r['rejected']} rejected, "
                           f"{r['traded_notional']:,.0f} traded)")
            net = sum(r["net_pnl"] for r in pnl_rows)
            traded = sum(r["traded_notional"] for r in pnl_rows)
            per_unit = f", {net / traded * 1e4:+.2f} bp of notional traded" if traded else ""
            typer.echo(f"test folds: net P&L {net:+,.2f} on {pnl_rows[0]['capital']:,.0f} capital per fold "
                       f"({execution} execution{per_unit})")
    top = ", ".join(f"{k} {v:.3g}" for k, v in list(result.importance.items())[:5])
    typer.echo(f"feature importance (gain): {top}")
    if register:
        evaluation = {"strategy": strategy_config.model_dump(),
                      "execution": "close_to_close" if bars_mode else execution}
        metadata = model_metadata(result, cfg, frame, interval, source, pnl_rows, evaluation)
        saved = ModelRegistry(registry).register(name, result.model.model_to_string(), metadata)
        typer.echo(f"registered {name} {saved.version} at {saved.path} "
                   f"(activate with: tapeflow models activate {saved.version} --registry {registry})")
    _say(f"done in {time.perf_counter() - started:.1f} s")


@models_app.command("list")
def list_models(
    registry: Path = typer.Option(DEFAULT_REGISTRY, help="Model registry directory."),
    name: Optional[str] = typer.Option(None, help="Only this model name."),
) -> None:
    """Every registered version with its out-of-sample IC; the active one is starred."""
    from strategies.registry import ModelRegistry, RegistryError

    reg = ModelRegistry(registry)
    names = [name] if name else reg.names()
    if not names:
        typer.echo(f"no models in {registry}")
        return
    for model_name in names:
        active = reg.active(model_name)
        for version in reg.versions(model_name):
            try:
                meta = reg.load(model_name, version).metadata
                ic = meta["metrics"]["overall"]["ic"]
                window = meta["training_window"]
                note = (f"IC {ic:+.4f}  {meta['interval']}  {len(window['symbols'])} symbols  "
                        f"{_iso(window['ts_start'])}..{_iso(window['ts_end'])}  created {meta['created_at']}")
            except (RegistryError, KeyError) as exc:
                note = f"UNREADABLE: {exc}"
            typer.echo(f"{'*' if version == active else ' '} {model_name} {version}  {note}")


@models_app.command("show")
def show_model(
    version: str = typer.Argument(..., help="A version such as v2, or 'active'."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, help="Model registry directory."),
    name: str = typer.Option("lightgbm", help="Model name."),
) -> None:
    """Print a version's metadata and metrics (checksum verified)."""
    from strategies.registry import ModelRegistry, RegistryError

    reg = ModelRegistry(registry)
    if version == "active":
        version = reg.active(name) or _fail(f"model {name} has no active version in {registry}")
    try:
        model = reg.load(name, version)
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(model.metadata, indent=2, sort_keys=True))


@models_app.command("activate")
def activate_model(
    version: str = typer.Argument(..., help="The version to activate, e.g. v2."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, help="Model registry directory."),
    name: str = typer.Option("lightgbm", help="Model name."),
    ic_floor: float = typer.Option(0.02, help="Refuse models whose out-of-sample IC is below this."),
    notify: bool = typer.Option(True, "--notify/--no-notify",
                                help="Tell a running pipeline (its control spool, or with --brokers the control topic)."),
    brokers: Optional[str] = BROKERS_OPTION,
    prefix: str = PREFIX_OPTION,
) -> None:
    """Activate a version after the promotion gate; a running pipeline hot-swaps to it between bars."""
    from strategies.registry import GatePolicy, ModelRegistry, RegistryError

    _check_route(notify, brokers, prefix)
    try:
        model = ModelRegistry(registry).activate(name, version, _operator(), GatePolicy(ic_floor=ic_floor))
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"activated {name} {model.version} (out-of-sample IC {model.oos_ic:+.4f})")
    _notify(notify, model.version, f"activated {name} {model.version}", brokers, prefix)


@models_app.command("rollback")
def rollback_model(
    registry: Path = typer.Option(DEFAULT_REGISTRY, help="Model registry directory."),
    name: str = typer.Option("lightgbm", help="Model name."),
    ic_floor: float = typer.Option(0.02, help="Refuse models whose out-of-sample IC is below this."),
    notify: bool = typer.Option(True, "--notify/--no-notify",
                                help="Tell a running pipeline (its control spool, or with --brokers the control topic)."),
    brokers: Optional[str] = BROKERS_OPTION,
    prefix: str = PREFIX_OPTION,
) -> None:
    """Re-activate the version that was active before the current one."""
    from strategies.registry import GatePolicy, ModelRegistry, RegistryError

    _check_route(notify, brokers, prefix)
    reg = ModelRegistry(registry)
    current = reg.active(name)
    try:
        model = reg.rollback(name, _operator(), GatePolicy(ic_floor=ic_floor))
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"rolled {name} back from {current} to {model.version}")
    _notify(notify, model.version, f"rollback of {name} from {current} to {model.version}", brokers, prefix)


def _operator() -> str:
    from config.control_channel import operator_name

    return operator_name()


def _check_route(notify: bool, brokers: Optional[str], prefix: str) -> None:
    """Before the registry changes: a route that cannot be taken is refused, never ignored."""
    import os

    from tapeflow.cli_control import BROKERS_ENV, ControlRouteError, route_brokers

    given = brokers is not None and brokers != os.environ.get(BROKERS_ENV)  # not merely the environment's
    if not notify and (given or prefix):
        _fail("--brokers and --prefix say where to notify a running pipeline; --no-notify sends nothing")
    if notify:
        try:
            route_brokers(brokers, prefix)
        except ControlRouteError as exc:
            _fail(str(exc))


def _notify(notify: bool, version: str, detail: str, brokers: Optional[str] = None, prefix: str = "") -> None:
    """The running pipeline's signals stage swaps to ``version`` between bars (it checks the model again)."""
    if not notify:
        return
    from schemas import ControlKind
    from tapeflow.cli_control import send_control

    command, where = send_control(ControlKind.ACTIVATE_MODEL, name=version, detail=detail, brokers=brokers,
                                  prefix=prefix)
    _say(f"sent activate_model {version} as {command.issued_by} via {where}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and the ``models`` group to the main ``tapeflow`` app."""
    app.command("train")(train)
    app.add_typer(models_app, name="models")
