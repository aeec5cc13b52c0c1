"""Out-of-sample evaluation of a signal: forecast metrics, and P&L through the simulated venue.

Forecast metrics over rows with a prediction ``pred`` and a ``label`` (forward log return):

- ``ic``: Pearson correlation of prediction and label over all rows;
- ``rank_ic``: Spearman correlation, taken *cross-sectionally* per bar time (over the symbols of
  that bar, bars with at least 3 symbols and some dispersion) and averaged, when the data has
  several symbols, which is what a ranked book trades; with one symbol, the time-series Spearman;
- ``hit_rate``: share of rows where sign(prediction) equals sign(label), rows with a zero label
  or prediction left out.

P&L (``desk_pnl``): each test fold is replayed through its own :class:`trading.desk.TradingDesk`
(portfolio construction, pre-trade risk, the simulated venue with its latency, spread, impact and
fees, and the ledger): the fold's feature vectors go through a ``SignalState`` holding the fold's
model, exactly as in the pipeline, and the resulting cross-sections reach the desk together with
the tape's trades and quotes of that period, in the order the pipeline delivers them (a
cross-section trails its bar by the lateness window). Net P&L = realized + unrealized - fees at the
end of the fold.

The desk is the pipeline's (``evaluation_desk``: its capital, 4 % per name, risk limits, and the
venue's latency and 0.5 bp fee per side untouched) except for how it executes, ``EVALUATION_EXECUTION``
= ``passive``: limit orders at the touch, re-quoted each bar (``strategies/portfolio.py``). Why,
measured on the synthetic tape at its default planted strength (1M ticks, 150 ticks/s, 5-bar
labels, seed 7; figures per unit of notional traded): crossing costs 1.4 bp at the fill (half
spread, impact, tick rounding) before the 0.5 bp fee, against a forecast that realizes about 1 bp
over the next 10 s, so market orders lose 0.3-1.5 bp whatever the thresholds, no-trade band or
order size; resting at the touch fills at +0.1 bp against the mid (adverse selection eats most of
the half spread), and with the ``edge`` strategy nets +0.1 to +0.6 bp (positive in total on seeds
1-5, 7 and 11). Without the planted flow (``flow_alpha`` 0) the same passive desk loses (seed 7:
-1.7 bp), so the venue's passive fills are no free lunch. The simulated venue has no queue: a
resting order fills on the first print at its price (``participation`` caps its share of each
print); with ``participation`` 0.3, a crude stand-in for queue position, seed 7 still nets +0.15 bp
but seed 5 loses 0.06 bp. ``tapeflow train --execution market`` reports the taker P&L.

A bar file has no prints and no quotes for the venue to fill against, so for bars there is
``close_to_close_pnl``: the weight held over each bar earns the next close-to-close return, and
every change of weight pays ``cost_bps`` of the traded notional. It is a simpler model than the
venue's and is named differently on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import polars as pl

from market.calendar import XNYS
from trading.desk import DeskConfig, TradingDesk, default_portfolio
from strategies.signals import CrossSection, SignalState
from schemas import INTERVAL_NANOS, Bar, FeatureVector, RawTick
from strategies.portfolio import PortfolioConfig, PortfolioConstructor
from research.training import FEATURES, MarketDataSettings, market_records
from venues.sim_config import SimVenueConfig

MIN_CROSS_SECTION_FOR_RANK_IC = 3
EVALUATION_EXECUTION = "passive"


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0.0 or np.std(y) == 0.0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def prediction_metrics(frame: pl.DataFrame) -> dict[str, float]:
    """IC, rank IC and hit rate of ``pred`` against ``label`` (see the module docstring)."""
    pred = frame["pred"].to_numpy()
    label = frame["label"].to_numpy()
    n_symbols = frame["symbol"].n_unique()
    if n_symbols >= MIN_CROSS_SECTION_FOR_RANK_IC:
        # Average ranks per bar time, then Pearson of the ranks per bar time = Spearman per bar time.
        per_bar = (
            frame.with_columns(
                pl.col("pred").rank("average").over("bar_end").alias("_rp"),
                pl.col("label").rank("average").over("bar_end").alias("_rl"),
            )
            .group_by("bar_end")
            .agg(pl.len().alias("n"), pl.corr("_rp", "_rl").alias("ic"),
                 pl.col("_rp").std().alias("sp"), pl.col("_rl").std().alias("sl"))
            .filter((pl.col("n") >= MIN_CROSS_SECTION_FOR_RANK_IC) & (pl.col("sp") > 0) & (pl.col("sl") > 0))
        )
        ics = per_bar["ic"].drop_nulls().drop_nans().to_numpy()
        rank_ic = float(np.mean(ics)) if len(ics) else 0.0
    else:
        rank_ic = _pearson(frame["pred"].rank().to_numpy().astype(float), frame["label"].rank().to_numpy().astype(float))
    decided = (pred != 0.0) & (label != 0.0)
    hit = float(np.mean(np.sign(pred[decided]) == np.sign(label[decided]))) if decided.any() else 0.0
    return {"ic": _pearson(pred, label), "rank_ic": rank_ic, "hit_rate": hit, "rows": int(len(frame))}


# ---------------------------------------------------------------------------------- P&L


@dataclass
class FoldBook:
    """One test fold on its own desk."""

    index: int
    start: int  # first bar time of the fold
    end: int  # last bar time of the fold
    sections: list[CrossSection]
    desk: TradingDesk
    next_section: int = 0
    stats: dict = field(default_factory=dict)


def fold_sections(vectors: Iterable[FeatureVector], strategy, interval: str, account: str) -> list[CrossSection]:
    """Cross-sections a signals stage holding ``strategy`` releases for ``vectors`` (in bar order)."""
    state = SignalState(strategy, PortfolioConstructor(), account, symbols=None, interval=interval, emit_orders=False)
    ordered = sorted(vectors, key=lambda v: (v.bar_end, v.symbol))
    state.symbols = frozenset(v.symbol for v in ordered) or None
    out = [item for v in ordered for item in state.on_features(v)]
    out += state.flush()
    return [item for item in out if type(item) is CrossSection]


def evaluation_desk(config: MarketDataSettings, execution: str = EVALUATION_EXECUTION, calendar: str = XNYS) -> DeskConfig:
    """The pipeline's desk defaults on the market data's bar clock, executing ``market`` or ``passive``,
    at a venue with the trading sessions ``calendar`` names (``market/calendar.py``)."""
    portfolio = PortfolioConfig(**{**default_portfolio().model_dump(), "execution": execution})
    return DeskConfig(bar_interval=config.feature_interval, lateness_ns=config.lateness_ns, portfolio=portfolio,
                      venue=SimVenueConfig(calendar=calendar))


def desk_pnl(
    ticks: Iterable[RawTick],
    config: MarketDataSettings,
    folds: list[tuple[int, int, int, list[CrossSection]]],
    desk_config: DeskConfig | None = None,
    warmup_ns: int = 60_000_000_000,
    settle_bars: int = 5,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, float]]:
    """Replay the tape once; each fold ``(index, start, end, sections)`` trades on its own desk.

    Market events from ``warmup_ns`` before a fold's first bar (so marks and spreads are known)
    to ``settle_bars`` bars after its last one (so the last orders can fill) reach its desk; its
    sections are handed over once the tape is ``lateness_ns`` past their bar time, as in the
    pipeline. P&L (positions marked at their last price) is read after that. ``desk_config``
    defaults to :func:`evaluation_desk`.
    """
    desk_config = desk_config or evaluation_desk(config)
    books = [FoldBook(i, start, end, sorted(sections, key=lambda s: s.bar_end), TradingDesk(desk_config))
             for i, start, end, sections in folds]
    lag = config.lateness_ns
    settle = settle_bars * INTERVAL_NANOS[config.feature_interval]
    seen = 0
    for record in market_records(ticks, config):
        ts = record.ts_event
        seen += 1
        if progress is not None and seen % 500_000 == 0:
            progress(f"P&L replay: {seen:,} market records")
        for book in books:
            if ts < book.start - warmup_ns or ts > book.end + lag + settle:
                continue
            sections = book.sections
            while book.next_section < len(sections) and sections[book.next_section].bar_end + lag < ts:
                book.desk.on_cross_section(sections[book.next_section])
                book.next_section += 1
            if type(record) is not Bar:  # the desk keeps its own bar clock from the trades
                book.desk.on_market(record)
    results = []
    for book in books:
        for section in book.sections[book.next_section:]:
            book.desk.on_cross_section(section)
        book.desk.flush()
        pnl = book.desk.ledger.pnl()
        net = pnl["realized_pnl"] + pnl["unrealized_pnl"] - pnl["fees"]
        counts = book.desk.counts
        results.append({
            "fold": book.index,
            "net_pnl": net,
            "gross_pnl": net + pnl["fees"],
            "fees": pnl["fees"],
            "orders": counts["orders"],
            "fills": counts["fills"],
            "rejected": counts["rejected"],
            "cross_sections": counts["cross_sections"],
            "traded_notional": book.desk.venue.stats()["fill_notional"],
            "capital": desk_config.capital,
        })
    return results


def close_to_close_pnl(frame: pl.DataFrame, weight_column: str = "weight", cost_bps: float = 1.0) -> dict[str, float]:
    """Bar-file P&L in return units per unit of capital: sum of w_t * ret_{t+1} - cost * |w_t - w_{t-1}|.

    ``frame``: symbol, bar_end, close and ``weight_column`` (the target weight set at that bar's end).
    """
    per_symbol = (
        frame.sort("symbol", "bar_end")
        .with_columns(
            (pl.col("close").shift(-1).over("symbol") / pl.col("close")).log().fill_null(0.0).alias("_next"),
            (pl.col(weight_column) - pl.col(weight_column).shift(1).over("symbol").fill_null(0.0)).abs().alias("_turn"),
        )
    )
    gross = float((per_symbol[weight_column] * per_symbol["_next"]).sum())
    turnover = float(per_symbol["_turn"].sum())
    cost = turnover * cost_bps / 1e4
    return {"gross_return": gross, "turnover": turnover, "cost": cost, "net_return": gross - cost}


def vectors_from_frame(frame: pl.DataFrame, interval: str, feature_set: str = "v1") -> list[FeatureVector]:
    """Feature vectors back from frame rows (as the feature stage made them, minus ingest times)."""
    out = []
    for row in frame.select("symbol", "bar_end", "close", *FEATURES).iter_rows():
        symbol, bar_end, close = row[0], row[1], row[2]
        values = {name: (math.nan if value is None else value) for name, value in zip(FEATURES, row[3:])}
        out.append(FeatureVector.model_construct(
            schema_version=1, id=f"{symbol}:{interval}:{bar_end}:{feature_set}", ts_event=bar_end, ts_ingest=0,
            ts_tick_ingest=0, symbol=symbol, interval=interval, feature_set=feature_set, bar_end=bar_end,
            close=close, values=values,
        ))
    return out


def fold_strategies(result, strategy_config=None) -> list:
    """One serving strategy per fold, holding that fold's model (what the fold was scored with)."""
    from strategies.lightgbm_strategy import LightGBMStrategy, ServingModel

    return [
        LightGBMStrategy(ServingModel(text, f"fold{fold['fold']}", prediction_scale=result.prediction_scale), strategy_config)
        for text, fold in zip(result.fold_models, result.folds)
    ]


def fold_cross_sections(result, frame: pl.DataFrame, interval: str, strategy_config=None, account: str = "paper"):
    """``(fold, test_start, test_end, cross-sections)`` per fold, scored through the signals stage."""
    out = []
    for strategy, fold in zip(fold_strategies(result, strategy_config), result.folds):
        rows = frame.filter(pl.col("bar_end").is_between(fold["test_start"], fold["test_end"]))
        sections = fold_sections(vectors_from_frame(rows, interval), strategy, interval, account)
        out.append((fold["fold"], fold["test_start"], fold["test_end"], sections))
    return out


def sections_close_to_close(folds, frame: pl.DataFrame, cost_bps: float) -> list[dict[str, float]]:
    """``close_to_close_pnl`` of each fold's cross-sections (bar files: no prints to fill against)."""
    results = []
    for index, _start, _end, sections in folds:
        weights = pl.DataFrame(
            [(s.symbol, s.bar_end, s.target_weight) for section in sections for s in section.signals],
            schema={"symbol": pl.String, "bar_end": pl.Int64, "weight": pl.Float64}, orient="row",
        )
        joined = weights.join(frame.select("symbol", "bar_end", "close"), on=["symbol", "bar_end"])
        results.append({"fold": index, **close_to_close_pnl(joined, "weight", cost_bps)})
    return results
