"""Feature set v1 against an independent Polars reference, plus the stage's streaming contracts.

The reference below is written from the definitions in ``market/features.py``'s docstring with
whole-column Polars expressions (shift / rolling_* / ewm_mean); it shares no code with the
incremental implementation, so agreement to ~1e-9 means both read the definitions the same way.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.features import (
    FEATURE_SET_V1,
    FEATURE_SET_VERSION,
    WARMUP_BARS,
    FeatureState,
)
from schemas.market import INTERVAL_NANOS, Bar, FeatureVector
from tests.real_data import REAL_DATA

BTC_1M_CSV = REAL_DATA / "btc-perp-20211231-20220201_1m.csv"

# Relative tolerance for every feature; the absolute floor only matters for values that cross zero
# (returns, MACD, imbalance, z-score), where a relative test is meaningless. MACD is in price units,
# so its floor scales with the close (EMAs of ~5e4 carry ~1e-11 of rounding).
REL_TOL = 1e-9
ABS_TOL = 1e-12
PRICE_UNIT_FEATURES = {"macd", "macd_signal", "macd_hist"}


# --- bars ------------------------------------------------------------------------------------------


def make_bar(symbol, interval, bar_start, o, h, l, c, v, vwap, buy, sell, tick_ingest=0) -> Bar:
    return Bar(
        id=f"{symbol}:{interval}:{bar_start}",
        ts_event=bar_start + INTERVAL_NANOS[interval],
        ts_ingest=tick_ingest,
        symbol=symbol,
        interval=interval,
        bar_start=bar_start,
        bar_end=bar_start + INTERVAL_NANOS[interval],
        open=o,
        high=h,
        low=l,
        close=c,
        volume=v,
        vwap=vwap,
        trade_count=1,
        buy_volume=buy,
        sell_volume=sell,
        ts_tick_ingest=tick_ingest,
    )


def random_walk_bars(seed: int = 7, bars_per_symbol: int = 300) -> list[Bar]:
    """1s bars for three symbols at very different price levels, interleaved in random order.

    Time gaps are random (a symbol can go several seconds without a bar), some bars have no volume
    or no aggressor split, and ``FLAT`` sits still for 30 bars so the flat-window rules are hit.
    """
    rng = np.random.default_rng(seed)
    levels = {"AAA": 101.37, "BBB": 25_013.5, "FLAT": 3.25}
    per_symbol: dict[str, list[Bar]] = {}
    for symbol, level in levels.items():
        bars, close, t = [], level, 1_700_000_000 * 10**9
        for k in range(bars_per_symbol):
            t += int(rng.integers(1, 4)) * INTERVAL_NANOS["1s"]
            flat = symbol == "FLAT" and 50 <= k < 80
            o = close
            c = o if flat else o * math.exp(rng.normal(0.0, 2e-3))
            h = max(o, c) * (1.0 if flat else 1.0 + abs(rng.normal(0.0, 5e-4)))
            l = min(o, c) * (1.0 if flat else 1.0 - abs(rng.normal(0.0, 5e-4)))
            v = 7.0 if flat else float(rng.lognormal(3.0, 1.0)) * (rng.random() > 0.05)
            buy_share = float(rng.random())
            buy, sell = (0.0, 0.0) if rng.random() < 0.05 else (v * buy_share, v * (1.0 - buy_share))
            vwap = l + (h - l) * float(rng.random())
            bars.append(make_bar(symbol, "1s", t, o, h, l, c, v, vwap, buy, sell, tick_ingest=k))
            close = c
        per_symbol[symbol] = bars
    order = rng.permutation(np.repeat(list(levels), bars_per_symbol))
    cursors = {s: iter(b) for s, b in per_symbol.items()}
    return [next(cursors[s]) for s in order]


def btc_perp_1m_bars(n_rows: int = 2000) -> list[Bar]:
    """Real 1-minute bars; the file has no aggressor split or VWAP, so both are approximated."""
    df = pl.read_csv(BTC_1M_CSV, n_rows=n_rows).with_columns(
        pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_zone="UTC").dt.epoch("ns").alias("t")
    )
    return [
        make_bar("BTC-PERP", "1m", r["t"], r["open"], r["high"], r["low"], r["close"], r["volume"],
                 (r["high"] + r["low"] + r["close"]) / 3.0, r["volume"] / 2.0, r["volume"] / 2.0)
        for r in df.iter_rows(named=True)
    ]


def run(bars: list[Bar], interval: str) -> list[FeatureVector]:
    state = FeatureState(interval=interval)
    return [vector for bar in bars for vector in state.on_bar(bar)]


# --- independent reference ------------------------------------------------------------------------


def bars_frame(bars: list[Bar]) -> pl.DataFrame:
    return pl.DataFrame(
        [bar.model_dump(include={"symbol", "bar_end", "open", "high", "low", "close", "volume", "vwap",
                                 "buy_volume", "sell_volume"}) for bar in bars]
    )


def polars_reference(bars: list[Bar]) -> pl.DataFrame:
    """Every v1 feature for every bar (null where undefined), per symbol in arrival order."""
    c, o, h, l, v = (pl.col(x) for x in ("close", "open", "high", "low", "volume"))
    buy, sell = pl.col("buy_volume"), pl.col("sell_volume")
    idx = pl.int_range(pl.len())

    def wilder(x: pl.Expr) -> pl.Expr:
        seed = x.slice(1, 14).mean()  # first 14 changes: rows 1..14
        seeded = pl.when(idx < 14).then(None).when(idx == 14).then(seed).otherwise(x)
        return seeded.ewm_mean(alpha=1 / 14, adjust=False)

    def zscore_or(x: pl.Expr, value: pl.Expr, flat_value: float) -> pl.Expr:
        flat = x.rolling_max(20) == x.rolling_min(20)
        return pl.when(flat).then(flat_value).otherwise(value)

    def imbalance(b: pl.Expr, s: pl.Expr) -> pl.Expr:
        return pl.when(b + s == 0).then(0.0).otherwise((b - s) / (b + s))

    frames = []
    for part in bars_frame(bars).partition_by("symbol", maintain_order=True):
        diff = c.diff()
        ema12 = c.ewm_mean(alpha=2 / 13, adjust=False)
        ema26 = c.ewm_mean(alpha=2 / 27, adjust=False)
        part = part.with_columns(
            (c / c.shift(1)).log().alias("ret_1"),
            (c / c.shift(5)).log().alias("ret_5"),
            (c / c.shift(15)).log().alias("ret_15"),
            wilder(pl.when(diff > 0).then(diff).otherwise(0.0)).alias("avg_gain"),
            wilder(pl.when(diff < 0).then(-diff).otherwise(0.0)).alias("avg_loss"),
            (ema12 - ema26).alias("macd"),
            (c.rolling_mean(20) + 2 * c.rolling_std(20, ddof=0)).alias("upper"),
            (c.rolling_mean(20) - 2 * c.rolling_std(20, ddof=0)).alias("lower"),
        ).with_columns(
            pl.col("ret_1").pow(2).rolling_sum(20).sqrt().alias("rv_20"),
            pl.when(pl.col("avg_loss") == 0).then(100.0)
            .otherwise(100 - 100 / (1 + pl.col("avg_gain") / pl.col("avg_loss"))).alias("rsi_14"),
            pl.col("macd").ewm_mean(alpha=2 / 10, adjust=False).alias("macd_signal"),
            zscore_or(c, (c - pl.col("lower")) / (pl.col("upper") - pl.col("lower")), 0.5).alias("bb_pctb_20"),
            (c / pl.col("vwap") - 1).alias("vwap_dev"),
            zscore_or(v, (v - v.rolling_mean(20)) / v.rolling_std(20, ddof=0), 0.0).alias("volume_z_20"),
            imbalance(buy, sell).alias("imbalance_1"),
            imbalance(buy.rolling_sum(5), sell.rolling_sum(5)).alias("imbalance_5"),
            ((h - l) / c).alias("hl_range"),
            ((c - o) / o).alias("kbar_body"),
            ((h - pl.max_horizontal(o, c)) / o).alias("kbar_upper"),
            ((pl.min_horizontal(o, c) - l) / o).alias("kbar_lower"),
            idx.alias("bar_index"),
        ).with_columns(
            (pl.col("macd") - pl.col("macd_signal")).alias("macd_hist"),
        )
        frames.append(part)
    return pl.concat(frames).select("symbol", "bar_end", "bar_index", "close", *FEATURE_SET_V1)


def assert_matches_reference(vectors: list[FeatureVector], bars: list[Bar]) -> None:
    reference = polars_reference(bars)
    expected_keys = reference.filter(pl.col("bar_index") >= WARMUP_BARS - 1).select("symbol", "bar_end").rows()
    assert sorted((v.symbol, v.bar_end) for v in vectors) == sorted(expected_keys)

    by_key = {(r["symbol"], r["bar_end"]): r for r in reference.iter_rows(named=True)}
    worst = 0.0
    for vector in vectors:
        row = by_key[(vector.symbol, vector.bar_end)]
        for name in FEATURE_SET_V1:
            got, want = vector.values[name], row[name]
            assert want is not None and math.isfinite(want), (name, row)
            abs_tol = ABS_TOL * row["close"] if name in PRICE_UNIT_FEATURES else ABS_TOL
            assert math.isclose(got, want, rel_tol=REL_TOL, abs_tol=abs_tol), (
                f"{vector.symbol} bar_end={vector.bar_end} {name}: got {got!r}, reference {want!r}"
            )
            worst = max(worst, abs(got - want) / max(abs(want), 1.0))
    assert worst < REL_TOL


# --- agreement with the reference -----------------------------------------------------------------


def test_every_feature_matches_polars_reference_on_interleaved_random_walks():
    bars = random_walk_bars()
    vectors = run(bars, "1s")
    assert {v.symbol for v in vectors} == {"AAA", "BBB", "FLAT"}
    assert_matches_reference(vectors, bars)


def test_every_feature_matches_polars_reference_on_btc_perp_1m_bars():
    bars = btc_perp_1m_bars()
    vectors = run(bars, "1m")
    assert len(vectors) == len(bars) - WARMUP_BARS + 1
    assert_matches_reference(vectors, bars)


def test_flat_window_gives_mid_band_pctb_and_zero_volume_z():
    bars = random_walk_bars()
    flat_vectors = [v for v in run(bars, "1s") if v.symbol == "FLAT" and v.values["ret_15"] == 0.0
                    and v.values["rv_20"] == 0.0]
    assert flat_vectors, "the FLAT symbol should have vectors inside its 30-bar still stretch"
    for vector in flat_vectors:
        assert vector.values["bb_pctb_20"] == 0.5
        assert vector.values["volume_z_20"] == 0.0


def test_rsi_is_100_when_price_never_falls():
    t0 = 1_700_000_000 * 10**9
    bars = [make_bar("UP", "1s", t0 + k * 10**9, 100.0 + k, 100.5 + k, 99.5 + k, 100.0 + k, 5.0 + k, 100.0 + k,
                     3.0, 2.0 + k) for k in range(WARMUP_BARS)]
    (vector,) = run(bars, "1s")
    assert vector.values["rsi_14"] == 100.0
    assert vector.values["macd"] > 0.0


# --- streaming contracts --------------------------------------------------------------------------


def test_first_vector_of_each_symbol_is_emitted_on_its_warmup_bar():
    bars = random_walk_bars()
    state = FeatureState(interval="1s")
    seen: dict[str, int] = {}
    first_at: dict[str, int] = {}
    for bar in bars:
        seen[bar.symbol] = seen.get(bar.symbol, 0) + 1
        out = state.on_bar(bar)
        if out and bar.symbol not in first_at:
            first_at[bar.symbol] = seen[bar.symbol]
        assert bool(out) == (seen[bar.symbol] >= WARMUP_BARS)
    assert first_at == {"AAA": WARMUP_BARS, "BBB": WARMUP_BARS, "FLAT": WARMUP_BARS}
    assert WARMUP_BARS == 26 + 9


def test_vector_carries_bar_identity_times_and_v1_column_order():
    bars = btc_perp_1m_bars(n_rows=WARMUP_BARS)
    (vector,) = run(bars, "1m")
    last = bars[-1]
    assert tuple(vector.values) == FEATURE_SET_V1
    assert vector.id == f"BTC-PERP:1m:{last.bar_end}:v1"
    assert (vector.ts_event, vector.bar_end, vector.close) == (last.bar_end, last.bar_end, last.close)
    assert vector.ts_tick_ingest == last.ts_tick_ingest
    assert vector.ts_ingest > 0
    assert (vector.schema_version, vector.feature_set, vector.interval) == (1, FEATURE_SET_VERSION, "1m")
    # model_construct skips validation; the full validator must accept what we built.
    assert FeatureVector.model_validate(vector.model_dump()).content() == vector.content()
    assert FEATURE_SET_VERSION == "v1" and len(set(FEATURE_SET_V1)) == len(FEATURE_SET_V1) == 17


def test_vector_at_t_does_not_change_when_later_bars_are_appended():
    bars = random_walk_bars()
    cut = len(bars) // 2
    prefix = [v.content() for v in run(bars[:cut], "1s")]
    full = [v.content() for v in run(bars, "1s")]
    assert prefix and full[: len(prefix)] == prefix


def test_bars_of_other_interval_are_ignored():
    one_second = random_walk_bars(bars_per_symbol=WARMUP_BARS + 5)
    one_minute = btc_perp_1m_bars(n_rows=WARMUP_BARS + 5)
    state = FeatureState(interval="1s")
    assert all(state.on_bar(bar) == [] for bar in one_minute)
    assert state.symbols == {}
    mixed = list(one_second)
    for k, bar in enumerate(one_minute):
        mixed.insert(3 * k, bar)  # sprinkled through the whole 1s stream
    assert [v.content() for v in run(mixed, "1s")] == [v.content() for v in run(one_second, "1s")]


def test_pickle_round_trip_mid_stream_continues_identically():
    bars = random_walk_bars()
    cut = WARMUP_BARS * 3 + 7  # mid-warm-up for some symbols, warm for others
    uninterrupted = [v.content() for v in run(bars, "1s")]

    state = FeatureState(interval="1s")
    before = [v.content() for bar in bars[:cut] for v in state.on_bar(bar)]
    restored = pickle.loads(pickle.dumps(state))
    after = [v.content() for bar in bars[cut:] for v in restored.on_bar(bar)]
    assert before + after == uninterrupted


def test_duplicate_or_stale_bar_is_skipped_and_counted_without_touching_state():
    bars = btc_perp_1m_bars(n_rows=WARMUP_BARS + 10)
    clean = [v.content() for v in run(bars, "1m")]
    state = FeatureState(interval="1m")
    replayed = []
    for k, bar in enumerate(bars):
        replayed += [v.content() for v in state.on_bar(bar)]
        if k in (3, WARMUP_BARS + 2):
            assert state.on_bar(bar) == []  # the same bar again
            assert state.on_bar(bars[k - 1]) == []  # an older one
    assert replayed == clean
    assert state.stale_bars == 4


def test_unknown_interval_or_feature_set_is_rejected():
    with pytest.raises(ValueError, match="interval"):
        FeatureState(interval="5m")
    with pytest.raises(ValueError, match="feature set"):
        FeatureState(interval="1s", feature_set="v2")


# Valid bars with prices spanning 12 orders of magnitude, zero volumes and flat stretches.
_price = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
_volume = st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e9, allow_nan=False))


@st.composite
def _bar_specs(draw):
    o, c = draw(_price), draw(st.one_of(_price, st.just(None)))
    c = o if c is None else c  # often unchanged, to hit flat windows
    h = max(o, c) * draw(st.sampled_from([1.0, 1.001, 2.0]))
    l = min(o, c) / draw(st.sampled_from([1.0, 1.001, 2.0]))
    buy, sell = draw(_volume), draw(_volume)
    return o, h, l, c, buy + sell, buy, sell


@settings(max_examples=60, deadline=None)
@given(st.lists(_bar_specs(), min_size=WARMUP_BARS, max_size=WARMUP_BARS + 40))
def test_no_vector_ever_holds_nan_or_inf(specs):
    t0 = 1_700_000_000 * 10**9
    bars = [make_bar("X", "1s", t0 + k * 10**9, o, h, l, c, v, (h + l) / 2, buy, sell)
            for k, (o, h, l, c, v, buy, sell) in enumerate(specs)]
    vectors = run(bars, "1s")
    assert len(vectors) == len(bars) - WARMUP_BARS + 1
    for vector in vectors:
        assert all(math.isfinite(x) for x in vector.values.values()), vector.values
        assert 0.0 <= vector.values["rsi_14"] <= 100.0
        assert -1.0 <= vector.values["imbalance_5"] <= 1.0


def test_features_when_bars_have_no_volume_then_volume_features_nan_and_price_features_as_with_volume():
    """A bar file without volume (FX): nothing is invented, the price features are unchanged."""
    closes = [1.0 + 0.01 * ((i * 7) % 11) for i in range(40)]
    with_volume, without = FeatureState("1m"), FeatureState("1m")
    for i, c in enumerate(closes):
        start = i * INTERVAL_NANOS["1m"]
        full = make_bar("FX", "1m", start, c, c + 0.02, c - 0.02, c, 10.0 + i, c, 4.0, 6.0)
        bare = full.model_copy(update={"volume": None, "vwap": None, "trade_count": None, "buy_volume": None,
                                       "sell_volume": None})
        a, b = with_volume.on_bar(full), without.on_bar(bare)
        assert len(a) == len(b)
        for va, vb in zip(a, b):
            for name in FEATURE_SET_V1:
                if name in ("vwap_dev", "volume_z_20", "imbalance_1", "imbalance_5"):
                    assert math.isnan(vb.values[name]) and math.isfinite(va.values[name]), name
                else:
                    assert vb.values[name] == va.values[name], name
