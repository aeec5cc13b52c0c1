"""Training data for the LightGBM signal, built by the serving code path, and walk-forward splits.

Feature rows come from the same stage cores the pipeline runs (``NormalizeState`` -> ``BarBuilder``
-> ``FeatureState``), fed the way ``flows/builders.py`` feeds them: a trade goes to
``BarBuilder.on_trade``, a quote only advances the bar watermark, open bars are flushed at the end of
the tape, and the feature stage sees bars in the order the bar stage emits them. So a training row
is exactly the vector the running signals stage would score (tested against the Bytewax stages).

Labels. For a row of symbol s at bar time t, ``label = ln(close_{t+h} / close_t)`` where ``t+h`` is
s's h-th *observed* bar after t (bars, like features, skip seconds without trades). The feature row
uses bars <= t only; the label uses bars t and t+h only. ``label_end`` is the bar time of t+h, which
the walk-forward purge uses. Rows whose t+h is past the end of the tape have no label and are
dropped from training (they are still valid vectors).

Walk-forward. The distinct bar times are cut into ``n_folds + 1`` consecutive blocks; fold k tests
on block k (1..n_folds) and trains on what precedes it (``expanding``), or on the preceding block's
worth of bar times only (``rolling``). Purging: a training row must end ``gap`` distinct bar times
before the test block starts (``gap >= horizon``) *and* its label must end before the test block
starts, so no training label overlaps a test bar whatever the symbol's holes.

The real 1-minute BTC bars (``bars_from_file``) carry no aggressor split. Their buy and sell volume
are set to ``volume / 2`` each, which makes ``imbalance_1`` and ``imbalance_5`` identically 0 on
that data: honest, since the flow cannot be recovered from OHLCV. The file has no VWAP either; the
typical price ``(h + l + c) / 3`` stands in for it, so ``vwap_dev`` there is a typical-price
deviation. Its timestamps are taken as bar *open* times.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Protocol

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from market.bars import BarBuilder
from schemas.feature_set import FEATURE_SET_V1
from market.features import FeatureState
from market.normalize import NormalizeConfig, NormalizeState
from schemas import Bar, DeadLetter, FeatureVector, Quote, RawTick, Trade
from schemas.market import INTERVAL_NANOS

FEATURES: tuple[str, ...] = FEATURE_SET_V1
KEY_COLUMNS = ("symbol", "bar_end", "close")


class MarketDataSettings(Protocol):
    """What the market-data stages are configured with (``flows.pipeline.MarketDataConfig`` fits)."""

    normalize: NormalizeConfig
    bar_intervals: tuple[str, ...]
    lateness_ns: int
    feature_interval: str


@dataclass(frozen=True)
class TapeConfig:
    """The pipeline's market-data defaults, for callers without settings (tests, notebooks)."""

    normalize: NormalizeConfig = NormalizeConfig()
    bar_intervals: tuple[str, ...] = ("1s", "1m")
    lateness_ns: int = 500_000_000
    feature_interval: str = "1s"


MarketRecord = Trade | Quote | Bar


def market_records(ticks: Iterable[RawTick], config: MarketDataSettings) -> Iterator[MarketRecord]:
    """Trades, quotes and bars in the order the pipeline's normalize and bar stages emit them."""
    normalize = NormalizeState(config.normalize)
    bars = BarBuilder(intervals=tuple(config.bar_intervals), lateness_ns=config.lateness_ns)
    for tick in ticks:
        for record in normalize.on_raw(tick):
            kind = type(record)
            if kind is DeadLetter:
                continue
            yield record
            if kind is Trade:
                out = bars.on_trade(record)
            else:
                out = bars.advance(record.symbol, record.ts_event, record.ts_tick_ingest)
            for bar in out:
                if type(bar) is Bar:
                    yield bar
    yield from bars.flush()


def feature_vectors(bars: Iterable[Bar], interval: str) -> Iterator[FeatureVector]:
    features = FeatureState(interval=interval)
    for bar in bars:
        if type(bar) is Bar:
            yield from features.on_bar(bar)


def tape_vectors(
    ticks: Iterable[RawTick], config: MarketDataSettings, progress: Callable[[int], None] | None = None
) -> list[FeatureVector]:
    """Every feature vector the pipeline computes for ``ticks``; ``progress(n_vectors)`` now and then."""
    out: list[FeatureVector] = []
    for vector in feature_vectors(market_records(ticks, config), config.feature_interval):
        out.append(vector)
        if progress is not None and len(out) % 5_000 == 0:
            progress(len(out))
    return out


def bars_from_file(path: Path | str, symbol: str = "BTC-PERP", interval: str = "1m") -> Iterator[Bar]:
    """The real 1-minute OHLCV file as Bars (see the module docstring for what is derived)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bar file {path} not found; pass --path to a timestamp,open,high,low,close,volume CSV")
    frame = pl.read_csv(path)
    missing = {"timestamp", "open", "high", "low", "close", "volume"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path.name} lacks bar columns {sorted(missing)}; expected timestamp,open,high,low,close,volume")
    nanos = INTERVAL_NANOS[interval]
    frame = frame.with_columns(
        pl.col("timestamp").str.to_datetime(time_zone="UTC").dt.epoch("ns").alias("start")
    ).sort("start")
    for row, (start, o, h, l, c, v) in enumerate(
        frame.select("start", "open", "high", "low", "close", "volume").iter_rows(), start=2
    ):
        volume = float(v)
        try:
            yield Bar(
                id=f"{symbol}:{interval}:{start}", ts_event=start + nanos, ts_ingest=start + nanos, symbol=symbol,
                interval=interval, bar_start=start, bar_end=start + nanos, open=o, high=h, low=l, close=c,
                volume=volume, vwap=(h + l + c) / 3.0, trade_count=1, buy_volume=volume / 2.0,
                sell_volume=volume / 2.0, ts_tick_ingest=start + nanos,
            )
        except ValueError as exc:
            raise ValueError(f"{path.name} line {row}: not a valid bar ({exc})") from None


# ---------------------------------------------------------------------------------- frames, labels


def vectors_frame(vectors: Iterable[FeatureVector]) -> pl.DataFrame:
    """One row per vector: symbol, bar_end, close and the v1 features in column order."""
    rows = [(v.symbol, v.bar_end, v.close, *(v.values.get(name, math.nan) for name in FEATURES)) for v in vectors]
    schema = {"symbol": pl.String, "bar_end": pl.Int64, "close": pl.Float64, **{n: pl.Float64 for n in FEATURES}}
    return pl.DataFrame(rows, schema=schema, orient="row").sort("bar_end", "symbol")


def add_labels(frame: pl.DataFrame, horizon: int = 1) -> pl.DataFrame:
    """``label`` = forward log return over ``horizon`` observed bars per symbol, ``label_end`` its bar time."""
    if horizon < 1:
        raise ValueError(f"label horizon must be >= 1 bar, got {horizon}")
    return (
        frame.sort("symbol", "bar_end")
        .with_columns(
            (pl.col("close").shift(-horizon).over("symbol") / pl.col("close")).log().alias("label"),
            pl.col("bar_end").shift(-horizon).over("symbol").alias("label_end"),
        )
        .sort("bar_end", "symbol")
    )


def training_frame(frame: pl.DataFrame, horizon: int = 1) -> pl.DataFrame:
    """Labelled rows only, ordered by (bar_end, symbol)."""
    return add_labels(frame, horizon).filter(pl.col("label").is_not_null())


def frame_hash(frame: pl.DataFrame) -> str:
    """sha256 over column names and values, independent of the Polars version's file formats."""
    digest = hashlib.sha256()
    for name in frame.columns:
        digest.update(name.encode() + b"\0")
        column = frame[name]
        if column.dtype == pl.String:
            digest.update("\n".join(column.to_list()).encode())
        else:
            digest.update(np.ascontiguousarray(column.cast(pl.Float64).to_numpy()).tobytes())
    return digest.hexdigest()


def feature_matrix(frame: pl.DataFrame) -> np.ndarray:
    return frame.select(FEATURES).to_numpy().astype(np.float64, copy=False)


# ---------------------------------------------------------------------------------- walk-forward


@dataclass(frozen=True)
class FoldSplit:
    index: int
    train_rows: np.ndarray  # row positions in the training frame
    test_rows: np.ndarray
    test_start: int  # first bar time of the test block
    test_end: int  # last bar time of the test block


def walk_forward_splits(
    frame: pl.DataFrame,
    n_folds: int = 4,
    gap: int = 1,
    window: Literal["expanding", "rolling"] = "expanding",
) -> list[FoldSplit]:
    """Purged walk-forward folds over ``frame`` (labelled, with ``bar_end`` and ``label_end``)."""
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0 bars, got {gap}")
    times = np.unique(frame["bar_end"].to_numpy())
    block = len(times) // (n_folds + 1)
    if block <= gap + 1:
        raise ValueError(
            f"{len(times)} bar times are too few for {n_folds} folds with a gap of {gap} bars; "
            "use more data (--max-ticks) or fewer folds"
        )
    bar_end = frame["bar_end"].to_numpy()
    label_end = frame["label_end"].to_numpy()
    splits = []
    for k in range(1, n_folds + 1):
        first = k * block
        last = len(times) - 1 if k == n_folds else (k + 1) * block - 1
        test_start, test_end = int(times[first]), int(times[last])
        train_last = times[first - gap - 1]  # the newest bar time a training row may have
        train_first = times[max(0, first - gap - block)] if window == "rolling" else times[0]
        train = (bar_end >= train_first) & (bar_end <= train_last) & (label_end < test_start)
        test = (bar_end >= test_start) & (bar_end <= test_end)
        splits.append(FoldSplit(k, np.flatnonzero(train), np.flatnonzero(test), test_start, test_end))
    return splits


# ---------------------------------------------------------------------------------- fitting


class TrainConfig(BaseModel):
    """Labels, walk-forward and LightGBM settings; the defaults suit the 1s synthetic tape."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(
        default=5, ge=1,
        description="Label: forward log return over this many observed bars. 5: the synthetic flow moves the "
        "mid over the next 5 s, and on 1 s bars a 5-bar forecast is worth trading where a 1-bar one is not.")
    n_folds: int = Field(default=4, ge=1)
    gap: int | None = Field(default=None, ge=0, description="Purge gap in bar times; default = horizon.")
    window: Literal["expanding", "rolling"] = "expanding"
    num_trees: int = Field(default=150, ge=1)
    learning_rate: float = Field(default=0.03, gt=0)
    num_leaves: int = Field(default=15, ge=2)
    min_data_in_leaf: int = Field(default=200, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    lambda_l2: float = Field(default=10.0, ge=0)
    seed: int = 7
    num_threads: int = Field(default=2, ge=1, description="Fixed, with deterministic=True, so a fit is reproducible.")
    shuffle_labels: bool = Field(default=False, description="Control experiment: permute training labels.")

    @property
    def purge_gap(self) -> int:
        return self.horizon if self.gap is None else self.gap

    @model_validator(mode="after")
    def _gap_covers_horizon(self) -> "TrainConfig":
        if self.gap is not None and self.gap < self.horizon:
            raise ValueError(f"purge gap {self.gap} < label horizon {self.horizon}: training labels would overlap test bars")
        return self


def lgb_params(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "objective": "regression",
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "lambda_l2": cfg.lambda_l2,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,  # with deterministic=True: no data-dependent choice of histogram layout
        "num_threads": cfg.num_threads,
        "verbosity": -1,
    }


def fit_booster(frame: pl.DataFrame, cfg: TrainConfig):
    import lightgbm as lgb

    labels = frame["label"].to_numpy()
    if cfg.shuffle_labels:
        labels = np.random.default_rng(cfg.seed).permutation(labels)
    data = lgb.Dataset(feature_matrix(frame), label=labels, feature_name=list(FEATURES), free_raw_data=True)
    return lgb.train(lgb_params(cfg), data, num_boost_round=cfg.num_trees)


@dataclass
class WalkForwardResult:
    folds: list[dict[str, Any]]  # per fold: index, window, rows, metrics
    overall: dict[str, float]
    oos: pl.DataFrame  # symbol, bar_end, close, label, pred, fold
    fold_models: list[str]  # LightGBM text of each fold's model
    model: Any  # the booster fit on every labelled row: what gets registered
    prediction_scale: float
    importance: dict[str, float]


def walk_forward(
    frame: pl.DataFrame, cfg: TrainConfig, progress: Callable[[str], None] | None = None
) -> WalkForwardResult:
    """Fit and score every purged fold, then the final model on all rows (``frame`` is labelled)."""
    from research.evaluation import prediction_metrics

    splits = walk_forward_splits(frame, cfg.n_folds, cfg.purge_gap, cfg.window)
    folds, scored, texts = [], [], []
    for split in splits:
        train, test = frame[split.train_rows], frame[split.test_rows]
        booster = fit_booster(train, cfg)
        texts.append(booster.model_to_string())
        test = test.with_columns(pl.Series("pred", booster.predict(feature_matrix(test), num_threads=cfg.num_threads)),
                                 pl.lit(split.index).alias("fold"))
        metrics = prediction_metrics(test)
        folds.append({
            "fold": split.index, "train_rows": len(train), "test_rows": len(test),
            "train_end": int(train["bar_end"].max()), "test_start": split.test_start, "test_end": split.test_end,
            **metrics,
        })
        scored.append(test.select("symbol", "bar_end", "close", "label", "pred", "fold"))
        if progress is not None:
            progress(f"fold {split.index}/{len(splits)}: train {len(train):,} rows, test {len(test):,} rows, "
                     f"IC {metrics['ic']:+.4f}, rank IC {metrics['rank_ic']:+.4f}, hit {metrics['hit_rate']:.3f}")
    oos = pl.concat(scored)
    overall = prediction_metrics(oos)
    model = fit_booster(frame, cfg)
    gains = model.feature_importance(importance_type="gain")
    importance = {name: float(g) for name, g in sorted(zip(FEATURES, gains), key=lambda kv: -kv[1])}
    scale = float(oos["pred"].std() or 0.0)
    return WalkForwardResult(folds, overall, oos, texts, model, scale if scale > 0 else 1.0, importance)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for package in ("lightgbm", "numpy", "polars", "tapeflow"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def model_metadata(
    result: WalkForwardResult,
    cfg: TrainConfig,
    frame: pl.DataFrame,
    interval: str,
    source: str,
    pnl: list[dict[str, Any]] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the registry stores beside the model (see ``strategies/registry.py``); ``evaluation``:
    the strategy and execution settings the P&L was measured with."""
    from schemas.feature_set import FEATURE_SET_VERSION

    return {
        "feature_set": FEATURE_SET_VERSION,
        "feature_names": list(FEATURES),
        "interval": interval,
        "label": {"kind": "forward_log_return", "horizon_bars": cfg.horizon, "purge_gap_bars": cfg.purge_gap},
        "training_window": {
            "ts_start": int(frame["bar_end"].min()),
            "ts_end": int(frame["bar_end"].max()),
            "symbols": sorted(frame["symbol"].unique().to_list()),
            "rows": len(frame),
        },
        "source": source,
        "train_config": cfg.model_dump(),
        "lightgbm_params": lgb_params(cfg),
        "metrics": {"folds": result.folds, "overall": result.overall, "pnl": pnl or []},
        "evaluation": evaluation or {},
        "feature_importance_gain": result.importance,
        "prediction_scale": result.prediction_scale,
        "data_hash": frame_hash(frame),
        "library_versions": library_versions(),
    }
