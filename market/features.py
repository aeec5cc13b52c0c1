"""Feature stage, feature set v1: one ``FeatureVector`` per symbol per closed bar, computed incrementally.

``FeatureState(interval, feature_set="v1").on_bar(bar)`` keeps one small state per symbol and returns
``[FeatureVector]`` for a bar of its interval once that symbol is warm, else ``[]``. Bars of other
intervals are ignored (the stage is wired once per interval). The state is plain Python and
picklable, so Bytewax recovery can snapshot it.

Conventions
-----------
- "k bars" means k *observed* bars of that symbol, in arrival order. Gaps in event time (no trades,
  so no bar) are not filled: ``ret_5`` after a 10-minute gap spans more than 5 minutes. Filling
  would invent prices that never traded.
- Index ``t`` is the current bar; every feature at ``t`` uses bars ``<= t`` only (no look-ahead),
  so a vector never changes when later bars arrive.
- A bar whose ``bar_end`` does not advance past the symbol's last bar (a duplicate or stale replay)
  is skipped and counted in ``FeatureState.stale_bars``: folding it in would corrupt every running
  indicator, and upstream (bars stage) already routes late data to the dlq.
- ``c``, ``o``, ``h``, ``l``, ``v`` are close, open, high, low, volume; ``r_t = ln(c_t / c_{t-1})``.
- "std" is the population standard deviation (ddof=0) of the window.

Features, in column order (``FEATURE_SET_V1``)
----------------------------------------------
``ret_1``, ``ret_5``, ``ret_15``
    ``ln(c_t / c_{t-k})`` for k = 1, 5, 15.
``rv_20``
    Realized volatility, not annualized, not demeaned: ``sqrt(sum_{i=t-19..t} r_i^2)`` (the 20 most
    recent one-bar log returns, which span 21 closes).
``rsi_14``
    Wilder RSI(14) on close-to-close changes ``d_i = c_i - c_{i-1}``, gain ``max(d, 0)``, loss
    ``max(-d, 0)``. Seed: ``avg_gain``/``avg_loss`` = simple mean of the first 14 gains/losses
    (available at the 15th bar); after that Wilder smoothing ``avg = (13 * avg + x) / 14`` (an EMA
    with alpha = 1/14). ``rsi = 100 - 100 / (1 + avg_gain / avg_loss)``, and ``100`` when
    ``avg_loss == 0`` (including a perfectly flat start, where both averages are 0).
``macd``, ``macd_signal``, ``macd_hist``
    ``EMA_n`` is the recursive EMA ``e_t = (1 - a) * e_{t-1} + a * c_t`` with ``a = 2 / (n + 1)``,
    seeded with the symbol's first close (``e_0 = c_0``). ``macd = EMA_12 - EMA_26`` (price units);
    ``macd_signal`` = the same EMA with n = 9 over ``macd``, seeded with the first ``macd`` (0);
    ``macd_hist = macd - macd_signal``. The seed biases early values, so vectors are held back
    until 26 + 9 bars have been seen (see warm-up).
``bb_pctb_20``
    Bollinger %b(20, 2): ``m`` = mean and ``s`` = std of the last 20 closes (including ``c_t``),
    ``upper = m + 2s``, ``lower = m - 2s``, ``%b = (c_t - lower) / (upper - lower)``. When the 20
    closes are all equal the bands collapse; ``%b`` is then defined as ``0.5`` (the close sits on the
    mid band). Flatness is tested exactly (max == min), not as ``s == 0``, because a float mean of
    equal values can miss them by one ulp and turn 0/0 into noise.
``vwap_dev``
    ``c_t / vwap_t - 1`` with the bar's own VWAP.
``volume_z_20``
    ``(v_t - mean) / std`` over the last 20 volumes including ``v_t``; ``0`` when the 20 volumes are
    all equal (same exact flatness test as above).
``imbalance_1``
    ``(buy - sell) / (buy + sell)`` of the bar's aggressor volumes; ``0`` when both are 0.
``imbalance_5``
    The same over the sums of buy and sell volume of the last 5 bars; ``0`` when both sums are 0.
``hl_range``
    ``(h_t - l_t) / c_t``.

A bar replayed from a file that lacks volume, VWAP or aggressor volumes (None in the Bar) gives NaN
for ``vwap_dev``, ``volume_z_20`` and the imbalances, for as long as such a bar is in their window:
a feature is never computed from a value nobody recorded.
``kbar_body``, ``kbar_upper``, ``kbar_lower``
    ``(c - o) / o``, ``(h - max(o, c)) / o``, ``(min(o, c) - l) / o`` of the bar (candle shape).

Warm-up
-------
``WARMUP_BARS = 35`` (26 + 9, for MACD). The first vector of a symbol is emitted on its 35th bar.
The other features need fewer: ``rv_20`` 21 bars, ``ret_15`` 16, ``rsi_14`` 15, the 20-bar windows 20.

Why hand-written indicators
---------------------------
They are ~100 lines; a library would need to match these exact definitions (seeds, ddof, flat-window
rules) and be picklable per symbol, which is more to verify than to write. Window statistics are
recomputed from the deque each bar (windows <= 20, O(window)) instead of kept as running sums, which
drift; only the EMAs and Wilder averages are recursive, as their definitions are.
"""

from __future__ import annotations

import math
from collections import deque

from schemas.base import now_ns
from schemas.feature_set import FEATURE_SET_V1, FEATURE_SET_VERSION
from schemas.market import INTERVAL_NANOS, Bar, FeatureVector

MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
RSI_PERIOD = 14
WINDOW_20 = 20
IMBALANCE_WINDOW = 5
RETURN_LAGS = (1, 5, 15)

WARMUP_BARS = MACD_SLOW + MACD_SIGNAL

_ALPHA_FAST = 2.0 / (MACD_FAST + 1)
_ALPHA_SLOW = 2.0 / (MACD_SLOW + 1)
_ALPHA_SIGNAL = 2.0 / (MACD_SIGNAL + 1)


def _mean_std(window: deque) -> tuple[float, float]:
    """Two-pass mean and population std: exact enough for 1e-9 agreement, unlike E[x^2] - E[x]^2."""
    n = len(window)
    mean = sum(window) / n
    var = sum((x - mean) * (x - mean) for x in window) / n
    return mean, math.sqrt(var)


def _imbalance(buy: float, sell: float) -> float:
    total = buy + sell
    if total != total:
        return math.nan  # aggressor volumes the bar file did not have
    return (buy - sell) / total if total > 0.0 else 0.0


class SymbolFeatures:
    """Running indicator state of one symbol; ``update`` folds in a bar and returns values when warm."""

    __slots__ = (
        "bars_seen",
        "last_bar_end",
        "closes",
        "returns",
        "volumes",
        "buy_volumes",
        "sell_volumes",
        "ema_fast",
        "ema_slow",
        "macd_signal",
        "rsi_gain",
        "rsi_loss",
    )

    def __init__(self) -> None:
        self.bars_seen = 0
        self.last_bar_end = -1
        # 20 closes cover both the Bollinger window and c_{t-15} for ret_15.
        self.closes: deque[float] = deque(maxlen=WINDOW_20)
        self.returns: deque[float] = deque(maxlen=WINDOW_20)
        self.volumes: deque[float] = deque(maxlen=WINDOW_20)
        self.buy_volumes: deque[float] = deque(maxlen=IMBALANCE_WINDOW)
        self.sell_volumes: deque[float] = deque(maxlen=IMBALANCE_WINDOW)
        self.ema_fast = 0.0
        self.ema_slow = 0.0
        self.macd_signal = 0.0
        # Sums of gains/losses while seeding (bars 2..15), then the Wilder averages.
        self.rsi_gain = 0.0
        self.rsi_loss = 0.0

    # Slots classes without __dict__ need explicit pickle state (Bytewax recovery snapshots this).
    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def update(self, bar: Bar) -> tuple[float, ...] | None:
        """Fold ``bar`` in; return the v1 values in ``FEATURE_SET_V1`` order, or None while warming up."""
        close = bar.close
        self.bars_seen += 1
        n = self.bars_seen
        self.last_bar_end = bar.bar_end

        if n == 1:
            self.ema_fast = self.ema_slow = close
            self.macd_signal = 0.0  # first macd is EMA_12 - EMA_26 = c_0 - c_0
        else:
            prev = self.closes[-1]
            self.returns.append(math.log(close / prev))
            change = close - prev
            gain = change if change > 0.0 else 0.0
            loss = -change if change < 0.0 else 0.0
            if n <= RSI_PERIOD + 1:
                self.rsi_gain += gain
                self.rsi_loss += loss
                if n == RSI_PERIOD + 1:
                    self.rsi_gain /= RSI_PERIOD
                    self.rsi_loss /= RSI_PERIOD
            else:
                self.rsi_gain = (self.rsi_gain * (RSI_PERIOD - 1) + gain) / RSI_PERIOD
                self.rsi_loss = (self.rsi_loss * (RSI_PERIOD - 1) + loss) / RSI_PERIOD
            self.ema_fast = (1.0 - _ALPHA_FAST) * self.ema_fast + _ALPHA_FAST * close
            self.ema_slow = (1.0 - _ALPHA_SLOW) * self.ema_slow + _ALPHA_SLOW * close
            macd = self.ema_fast - self.ema_slow
            self.macd_signal = (1.0 - _ALPHA_SIGNAL) * self.macd_signal + _ALPHA_SIGNAL * macd

        self.closes.append(close)
        self.volumes.append(_known(bar.volume))
        self.buy_volumes.append(_known(bar.buy_volume))
        self.sell_volumes.append(_known(bar.sell_volume))

        if n < WARMUP_BARS:
            return None
        return self._values(bar)

    def _values(self, bar: Bar) -> tuple[float, ...]:
        closes, returns = self.closes, self.returns
        close, open_, high, low = bar.close, bar.open, bar.high, bar.low

        ret_1 = returns[-1]
        ret_5 = math.log(close / closes[-1 - 5])
        ret_15 = math.log(close / closes[-1 - 15])
        rv_20 = math.sqrt(sum(r * r for r in returns))

        if self.rsi_loss == 0.0:
            rsi = 100.0
        else:
            rsi = 100.0 - 100.0 / (1.0 + self.rsi_gain / self.rsi_loss)

        macd = self.ema_fast - self.ema_slow
        macd_signal = self.macd_signal

        if max(closes) == min(closes):
            pctb = 0.5
        else:
            mean, std = _mean_std(closes)
            lower = mean - 2.0 * std
            pctb = (close - lower) / (4.0 * std)

        volumes = self.volumes
        if any(v != v for v in volumes):
            volume_z = math.nan  # a volume the bar file did not have
        elif max(volumes) == min(volumes):
            volume_z = 0.0
        else:
            mean, std = _mean_std(volumes)
            volume_z = (bar.volume - mean) / std

        return (
            ret_1,
            ret_5,
            ret_15,
            rv_20,
            rsi,
            macd,
            macd_signal,
            macd - macd_signal,
            pctb,
            math.nan if bar.vwap is None else close / bar.vwap - 1.0,
            volume_z,
            _imbalance(_known(bar.buy_volume), _known(bar.sell_volume)),
            _imbalance(sum(self.buy_volumes), sum(self.sell_volumes)),
            (high - low) / close,
            (close - open_) / open_,
            (high - max(open_, close)) / open_,
            (min(open_, close) - low) / open_,
        )


def _known(value: float | None) -> float:
    """A bar field a bar file may lack (None) as NaN: every feature computed from it is NaN."""
    return math.nan if value is None else value


class FeatureState:
    """Feature stage core for one bar interval: many symbols, one ``SymbolFeatures`` each."""

    def __init__(self, interval: str = "1s", feature_set: str = FEATURE_SET_VERSION) -> None:
        if interval not in INTERVAL_NANOS:
            raise ValueError(f"unknown bar interval {interval!r}; expected one of {sorted(INTERVAL_NANOS)}")
        if feature_set != FEATURE_SET_VERSION:
            raise ValueError(f"unknown feature set {feature_set!r}; this module computes {FEATURE_SET_VERSION!r}")
        self.interval = interval
        self.feature_set = feature_set
        self.symbols: dict[str, SymbolFeatures] = {}
        self.stale_bars = 0

    def on_bar(self, bar: Bar) -> list[FeatureVector]:
        if bar.interval != self.interval:
            return []
        state = self.symbols.get(bar.symbol)
        if state is None:
            state = self.symbols[bar.symbol] = SymbolFeatures()
        elif bar.bar_end <= state.last_bar_end:
            self.stale_bars += 1
            return []
        values = state.update(bar)
        if values is None:
            return []
        return [
            FeatureVector.model_construct(
                schema_version=1,
                id=f"{bar.symbol}:{self.interval}:{bar.bar_end}:{self.feature_set}",
                ts_event=bar.bar_end,
                ts_ingest=now_ns(),
                ts_tick_ingest=bar.ts_tick_ingest,
                symbol=bar.symbol,
                interval=self.interval,
                feature_set=self.feature_set,
                bar_end=bar.bar_end,
                close=bar.close,
                values=dict(zip(FEATURE_SET_V1, values)),
            )
        ]
