"""A deterministic synthetic market tape with a planted, weak but learnable order-flow signal.

``SyntheticFeed(SyntheticConfig(...)).ticks(start_seq)`` yields ``tapeflow.v1`` trade prints and
top-of-book quotes for N symbols in event-time order, the same tape for the same config on any
machine. The market it simulates (full description with the reasoning: ``feeds/SYNTHETIC.md``):

- **Clock.** A 6.5 h session (default open 2024-01-02T14:30:00Z = 09:30 New York) split into 1 s
  event-time buckets; after the close the tape continues at the next weekday's open (prices carry).
- **Intensity.** Ticks per bucket ~ Poisson(``ticks_per_second`` · u(x)), x = time of day in
  [0, 1], u(x) = (1 + c·(2x−1)²)/(1 + c/3) (U-shape, mean 1, c = ``u_shape``); each tick picks a
  symbol by ``activity`` weight and is a quote with probability ``quote_ratio``, else a trade.
  Event times are strictly increasing across the whole tape (so per symbol too).
- **Prices.** Log mid on a 100 ms grid: σ_{s,b}/√10 · (β·z_mkt + √(1−β²)·z_s) per step, β =
  ``market_beta`` (a common market factor, pairwise return correlation ≈ β²), plus jumps
  (``jump_rate_per_hour``, log size N(0, ``jump_size``²)), plus the planted drift below.
  σ_{s,b} = σ_s · √u(x) · exp(h_{s,b} − v²) with a mean-reverting log-vol h (AR(1) per second,
  stationary sd v = ``vol_of_vol``, half-life ``vol_half_life_s``), σ_s = daily vol / √23400.
- **Book and prints.** Spread in ticks = 1 + ⌊``spread_vol_mult``·σ_{s,b}·mid/tick⌋ (≥ 1, so
  bid < ask always, wider when volatile); bid = ⌊mid/tick − spread/2⌋·tick. A buy print trades at
  the ask, a sell at the bid; sizes are lognormal, scaled by √u(x), in whole shares (≥ 1).

**The planted relationship** (``flow_alpha`` = 0 removes it). Per symbol s and 1 s bucket b:

    f_{s,b}   = φ·f_{s,b−1} + √(1−φ²)·η_{s,b},            η ~ N(0, 1)         (latent order flow)
    P(buy)    = clip(0.5 + k·f_{s,b}, 0.05, 0.95)   for each trade print in (s, b)
    drift_{s,b} = α·σ_{s,b}·Σ_{j=1..H} w_j·f_{s,b−j},   w_j = 2(H+1−j)/(H(H+1))   (Σ w_j = 1)

drift_{s,b} is added to the log mid over bucket b (spread evenly over its ten 100 ms steps). So a
bucket's aggressor imbalance (nbuy − nsell)/n ≈ 2k·f reveals f, and f moves the mid over the next H
seconds by α·σ·f in total. Defaults: φ = ``flow_phi`` = 0.6, k = ``flow_k`` = 0.15, α =
``flow_alpha`` = 0.25, H = ``flow_horizon_s`` = 5. The drift is a quarter of the σ noise, so the
signal is weak: over a full default session the 1 s-bar correlation of a bar's imbalance with the
next bar's return (IC) is ≈ 0.09 on trade prices (bid–ask bounce works against it), ≈ 0.12 on mids,
≈ 0.13 for the 5-bar imbalance; with ``flow_alpha`` = 0 it is ≈ 0 on mids and slightly negative on
trade prices (the bounce alone). Measurements and the recipe: ``feeds/SYNTHETIC.md``.

**Determinism and resume.** The tape is generated in blocks of ``BLOCK_SECONDS`` event seconds,
block i drawing from ``numpy.random.default_rng([seed, i])`` and carrying the latent state (flow,
log-vol, mids, per-symbol trade counters) from block i−1. ``ticks(start_seq)`` re-simulates the
blocks before ``start_seq`` with numpy only (no records built, ~10× faster than emitting) and starts
emitting at exactly tick ``start_seq``, so a resumed stream equals the tail of a full run.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from feeds.batching import empty_batch, handovers
from feeds.pacing import Pacer
from feeds.raw import raw_tick
from market.calendar import ALWAYS_OPEN, XNYS, calendar_by_name
from schemas import RawTick, now_ns
from schemas.columns import QUOTE, SIDE_BUY, SIDE_NONE, SIDE_SELL, TRADE, RawTickBatch

NANOS_PER_SECOND = 1_000_000_000
SESSION_SECONDS = 23_400  # 09:30–16:00 New York
STEPS_PER_SECOND = 10  # the mid moves on a 100 ms grid
STEP_NANOS = NANOS_PER_SECOND // STEPS_PER_SECOND
BLOCK_SECONDS = 16  # event seconds per generated block; part of the tape's definition (resume, seeds)
DEFAULT_START_NS = int(datetime(2024, 1, 2, 14, 30, tzinfo=timezone.utc).timestamp()) * NANOS_PER_SECOND

_SIDES = ("sell", "buy")
_SIDE_CODES = np.array([SIDE_SELL, SIDE_BUY], dtype=np.int8)  # TickBlock.side (0 sell, 1 buy) -> raw code


class SyntheticConfig(BaseModel):
    """Everything that defines the synthetic tape; the same config always yields the same ticks.

    Per-symbol tuples (``base_prices``, ``daily_vols``, ``activity``) default from the symbol's index i:
    price 100 + 50·i, daily vol 1.5 % + 0.25 %·(i mod 5), equal activity. Symbols are ``SYN0``..``SYN7``
    rather than real tickers so a synthetic price is never mistaken for a quote of a real company.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 7
    symbols: tuple[str, ...] = tuple(f"SYN{i}" for i in range(8))
    ticks_per_second: float = Field(2000.0, gt=0, description="Mean event-time tick rate, all symbols.")
    start_ns: int = Field(DEFAULT_START_NS, ge=0, description="Open of the first session (event time).")
    session_seconds: int = Field(SESSION_SECONDS, gt=0)
    max_ticks: int | None = Field(None, ge=0, description="Stop after this many ticks; None = unbounded.")
    quote_ratio: float = Field(0.3, ge=0.0, le=1.0)
    u_shape: float = Field(3.0, ge=0.0, description="Open/close intensity is (1 + u_shape)x the midday low.")
    activity: tuple[float, ...] | None = None
    base_prices: tuple[float, ...] | None = None
    daily_vols: tuple[float, ...] | None = None
    market_beta: float = Field(0.6, ge=0.0, le=1.0)
    vol_of_vol: float = Field(0.3, ge=0.0, description="Stationary sd of the log-vol.")
    vol_half_life_s: float = Field(900.0, gt=0)
    jump_rate_per_hour: float = Field(1.0, ge=0.0)
    jump_size: float = Field(0.003, ge=0.0, description="Sd of a jump's log return.")
    tick_size: float = Field(0.01, gt=0)
    spread_vol_mult: float = Field(0.25, ge=0.0)
    mean_trade_size: float = Field(100.0, gt=0)
    trade_size_sigma: float = Field(1.0, ge=0.0)
    mean_quote_lots: float = Field(5.0, gt=0, description="Mean displayed size in 100-share lots.")
    flow_alpha: float = Field(0.25, description="Planted coefficient: drift = alpha·sigma·weighted past flow.")
    flow_k: float = Field(0.15, ge=0.0, le=0.45, description="P(buy) = 0.5 + k·f.")
    flow_phi: float = Field(0.6, ge=0.0, lt=1.0, description="AR(1) persistence of f per 1 s bucket.")
    flow_horizon_s: int = Field(5, ge=1, le=60)
    source: str | None = Field(None, description="Default 'synthetic:{seed}', so two seeds never share ids.")

    @model_validator(mode="after")
    def _per_symbol_lengths(self) -> "SyntheticConfig":
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols must be non-empty and unique, got {self.symbols}")
        for name in ("activity", "base_prices", "daily_vols"):
            values = getattr(self, name)
            if values is not None:
                if len(values) != len(self.symbols):
                    raise ValueError(f"{name} has {len(values)} values for {len(self.symbols)} symbols")
                if any(v <= 0 for v in values):
                    raise ValueError(f"{name} must be positive, got {values}")
        return self

    @property
    def source_name(self) -> str:
        return self.source or f"synthetic:{self.seed}"

    def per_symbol(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(activity weights summing to 1, base prices, daily vols) as arrays."""
        n = len(self.symbols)
        idx = np.arange(n)
        activity = np.asarray(self.activity if self.activity else np.ones(n), dtype=float)
        prices = np.asarray(self.base_prices if self.base_prices else 100.0 + 50.0 * idx, dtype=float)
        vols = np.asarray(self.daily_vols if self.daily_vols else 0.015 + 0.0025 * (idx % 5), dtype=float)
        return activity / activity.sum(), prices, vols


@dataclass
class MarketState:
    """What one block hands to the next: the latent processes and the counters."""

    flow: np.ndarray  # (H, S): f of the last H seconds, newest first
    log_vol: np.ndarray  # (S,)
    log_mid: np.ndarray  # (S,)
    trade_count: np.ndarray  # (S,) int64, next trade id per symbol
    next_second: int = 0  # global event-second index of the next block


@dataclass
class TickBlock:
    """One block of ticks as columns (event-time order); ``side`` is 1 = buy, 0 = sell (trades only)."""

    ts: np.ndarray
    symbol: np.ndarray
    is_quote: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    bid_size: np.ndarray
    ask_size: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray
    trade_id: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class MarketSimulator:
    """The numpy core: turns (config, block index, carried state) into the next :class:`TickBlock`."""

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self.weights, self.base_prices, daily_vols = config.per_symbol()
        self.n_symbols = len(config.symbols)
        self.sigma_1s = daily_vols / math.sqrt(SESSION_SECONDS)
        h = config.flow_horizon_s
        self.flow_weights = 2.0 * (h + 1 - np.arange(1, h + 1)) / (h * (h + 1))  # w_1..w_H, sum 1
        self.vol_ar = 0.5 ** (1.0 / config.vol_half_life_s)
        self.price_decimals = max(0, -math.floor(math.log10(config.tick_size))) + 4

    def initial_state(self) -> MarketState:
        s, h = self.n_symbols, self.config.flow_horizon_s
        rng = np.random.default_rng([self.config.seed, 2**32 - 1])  # the state before block 0
        flow = np.zeros((h, s))
        flow[0] = rng.standard_normal(s)
        for j in range(1, h):  # backwards in time, an AR(1) is reversible in distribution
            flow[j] = self.config.flow_phi * flow[j - 1] + math.sqrt(1 - self.config.flow_phi**2) * rng.standard_normal(s)
        log_vol = self.config.vol_of_vol * rng.standard_normal(s)
        return MarketState(flow, log_vol, np.log(self.base_prices), np.zeros(s, dtype=np.int64), 0)

    def session_open_ns(self, session: np.ndarray) -> np.ndarray:
        """Event time of each session's open: the start day, then the following weekdays."""
        start_ns = self.config.start_ns
        day0 = np.datetime64(start_ns // (86_400 * NANOS_PER_SECOND), "D")
        days = np.where(session == 0, day0, np.busday_offset(day0, session, roll="forward"))
        return start_ns + (days - day0).astype(np.int64) * 86_400 * NANOS_PER_SECOND

    def next_block(self, block: int, state: MarketState) -> tuple[TickBlock, MarketState]:
        cfg, s_n = self.config, self.n_symbols
        rng = np.random.default_rng([cfg.seed, block])
        seconds = state.next_second + np.arange(BLOCK_SECONDS)
        session, sec_in_session = np.divmod(seconds, cfg.session_seconds)
        x = (sec_in_session + 0.5) / cfg.session_seconds
        profile = (1.0 + cfg.u_shape * (2.0 * x - 1.0) ** 2) / (1.0 + cfg.u_shape / 3.0)

        # Latent per-second processes (a short loop: BLOCK_SECONDS iterations of S-vectors).
        flow_hist = state.flow.copy()
        log_vol = state.log_vol.copy()
        flow = np.empty((BLOCK_SECONDS, s_n))
        drift_units = np.empty((BLOCK_SECONDS, s_n))
        vols = np.empty((BLOCK_SECONDS, s_n))
        eta = rng.standard_normal((BLOCK_SECONDS, s_n))
        vol_shock = rng.standard_normal((BLOCK_SECONDS, s_n))
        phi, vol_ar, vv = cfg.flow_phi, self.vol_ar, cfg.vol_of_vol
        for b in range(BLOCK_SECONDS):
            drift_units[b] = self.flow_weights @ flow_hist  # uses f of the previous H seconds only
            f = phi * flow_hist[0] + math.sqrt(1.0 - phi * phi) * eta[b]
            flow_hist = np.vstack([f[None, :], flow_hist[:-1]])
            flow[b] = f
            log_vol = vol_ar * log_vol + vv * math.sqrt(1.0 - vol_ar * vol_ar) * vol_shock[b]
            vols[b] = log_vol
        sigma = self.sigma_1s[None, :] * np.sqrt(profile)[:, None] * np.exp(vols - vv * vv)
        drift = cfg.flow_alpha * sigma * drift_units

        # Log-mid path on the 100 ms grid: market factor + idiosyncratic + jumps + planted drift.
        steps = BLOCK_SECONDS * STEPS_PER_SECOND
        beta = cfg.market_beta
        z_mkt = rng.standard_normal((steps, 1))
        z_idio = rng.standard_normal((steps, s_n))
        step_sigma = np.repeat(sigma, STEPS_PER_SECOND, axis=0) / math.sqrt(STEPS_PER_SECOND)
        step_ret = step_sigma * (beta * z_mkt + math.sqrt(1.0 - beta * beta) * z_idio)
        step_ret += np.repeat(drift, STEPS_PER_SECOND, axis=0) / STEPS_PER_SECOND
        jump_p = cfg.jump_rate_per_hour / 3600.0 / STEPS_PER_SECOND
        jumps = (rng.random((steps, s_n)) < jump_p) * rng.normal(0.0, cfg.jump_size, (steps, s_n))
        log_mid = state.log_mid[None, :] + np.cumsum(step_ret + jumps, axis=0)

        # Tick times: Poisson count per second; strictly increasing offsets inside each second
        # (sorted draws from [0, 1e9 − n) plus their rank: uniform over n-subsets, never tied).
        counts = rng.poisson(cfg.ticks_per_second * profile)
        n = int(counts.sum())
        sec_of_tick = np.repeat(np.arange(BLOCK_SECONDS), counts)
        first_of_sec = np.cumsum(counts) - counts
        rank = np.arange(n) - first_of_sec[sec_of_tick]
        draws = rng.integers(0, NANOS_PER_SECOND - counts[sec_of_tick], endpoint=False)
        offsets = np.sort(sec_of_tick * NANOS_PER_SECOND + draws) - sec_of_tick * NANOS_PER_SECOND + rank
        opens = self.session_open_ns(session)
        ts = (opens + sec_in_session * NANOS_PER_SECOND)[sec_of_tick] + offsets

        symbol = np.searchsorted(np.cumsum(self.weights)[:-1], rng.random(n), side="right")
        is_quote = rng.random(n) < cfg.quote_ratio
        step_of_tick = sec_of_tick * STEPS_PER_SECOND + offsets // STEP_NANOS
        mid = np.exp(log_mid[step_of_tick, symbol])
        tick = cfg.tick_size
        tick_sigma = sigma[sec_of_tick, symbol]
        spread = 1 + np.floor(cfg.spread_vol_mult * tick_sigma * mid / tick).astype(np.int64)
        bid_ticks = np.maximum(1, np.floor(mid / tick - spread / 2.0).astype(np.int64))
        ask_ticks = bid_ticks + spread
        bid = np.round(bid_ticks * tick, self.price_decimals)
        ask = np.round(ask_ticks * tick, self.price_decimals)

        p_buy = np.clip(0.5 + cfg.flow_k * flow[sec_of_tick, symbol], 0.05, 0.95)
        side = (rng.random(n) < p_buy).astype(np.int8)
        price = np.where(side == 1, ask, bid)
        size_scale = cfg.mean_trade_size * np.sqrt(profile[sec_of_tick])
        sig = cfg.trade_size_sigma
        size = np.maximum(1.0, np.round(size_scale * rng.lognormal(-0.5 * sig * sig, sig, n)))
        extra_lots = max(cfg.mean_quote_lots - 1.0, 0.0)  # at least one 100-share lot on each side
        bid_size = 100.0 * (1 + rng.poisson(extra_lots, n))
        ask_size = 100.0 * (1 + rng.poisson(extra_lots, n))

        # Trade ids: a per-symbol counter over trade prints only, carried across blocks.
        trade_id = np.zeros(n, dtype=np.int64)
        trade_count = state.trade_count.copy()
        is_trade = ~is_quote
        for s in range(s_n):
            mask = is_trade & (symbol == s)
            k = int(mask.sum())
            trade_id[mask] = trade_count[s] + np.arange(k)
            trade_count[s] += k

        ticks = TickBlock(ts, symbol, is_quote, bid, ask, bid_size, ask_size, price, size, side, trade_id)
        new_state = MarketState(flow_hist, log_vol, log_mid[-1].copy(), trade_count, int(seconds[-1]) + 1)
        return ticks, new_state


class SyntheticFeed:
    """``SyntheticFeed(config, speed=0.0)``: the synthetic tape as RawTicks (``ticks``) or as
    RawTickBatches (``batches``), the same tape either way.

    ``speed`` paces by the wall clock through :class:`feeds.pacing.Pacer` (1.0: event-time gaps
    are replayed in real time; 0: as fast as possible). ``pacer_factory`` lets tests inject a clock.
    """

    def __init__(
        self,
        config: SyntheticConfig | None = None,
        speed: float = 0.0,
        *,
        pacer_factory: Callable[[float], Pacer] = Pacer,
    ) -> None:
        self.config = config or SyntheticConfig()
        self.speed = speed
        self._pacer_factory = pacer_factory
        self.source = self.config.source_name

    @property
    def calendar(self) -> str:
        """The trading calendar its tape follows (``market/calendar.py``): ``XNYS`` when the first
        session lies within an NYSE session (the default start, 09:30-16:00 New York on
        2024-01-02, does), else ``24/7`` so a tape started elsewhere in time still trades. Later
        sessions follow weekdays, not NYSE holidays: on a holiday the desk's orders are refused
        (``market_closed``)."""
        xnys = calendar_by_name(XNYS)
        first, last = self.config.start_ns, self.config.start_ns + self.config.session_seconds * NANOS_PER_SECOND - 1
        return XNYS if xnys.is_open(first) and xnys.is_open(last) else ALWAYS_OPEN

    def blocks(self, start_seq: int = 0) -> Iterator[tuple[int, TickBlock]]:
        """(seq of the block's first tick, block) from the block holding ``start_seq`` on."""
        sim = MarketSimulator(self.config)
        first_seq, block = 0, 0
        # Block k + 1 is simulated on a helper thread while block k is handed over: a block takes
        # 40-50 ms (16 s of an 8-symbol tape), which on the dataflow thread stood the whole pipeline
        # still every 16 s of a paced run. Same blocks, same order: only where they are computed moves.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tapeflow-synthetic") as ahead:
            next_block = ahead.submit(sim.next_block, block, sim.initial_state())
            while self.config.max_ticks is None or first_seq < self.config.max_ticks:
                ticks, state = next_block.result()
                next_block = ahead.submit(sim.next_block, block + 1, state)
                if first_seq + len(ticks) > start_seq:
                    yield first_seq, ticks
                first_seq += len(ticks)
                block += 1

    def batches(self, start_seq: int = 0, max_rows: int = 2_000) -> Iterator[RawTickBatch]:
        """Ticks ``start_seq``, ``start_seq + 1``, ... as RawTickBatches of at most ``max_rows`` rows.

        Their records (``to_records``) are exactly ``ticks(start_seq)`` but for the wall-clock
        ``ts_ingest``, which is one reading per batch, taken when the batch is handed over. The
        cutting, pacing and watermarks follow :mod:`feeds.batching`: unpaced, a batch's watermark is
        its last ``ts_event`` + 1 (the tape is strictly increasing); paced, what is due by the wall
        clock, with empty heartbeat batches through quiet stretches. A batch never spans two
        simulator blocks. ``symbols`` is always ``config.symbols`` (codes are the simulator's indices).
        """
        if start_seq < 0:
            raise ValueError(f"start_seq must be >= 0, got {start_seq}")
        source, symbols = self.source, self.config.symbols
        schedule = handovers(self._segments(start_seq), self._pacer_factory(self.speed), max_rows,
                             strictly_increasing=True)
        for handover in schedule:
            part = handover.segment
            if part is None:
                yield empty_batch(source, symbols, handover.watermark)
                continue
            first_seq, block = part
            yield _block_batch(source, symbols, block, first_seq, handover.lo, handover.hi, handover.watermark)

    def _segments(self, start_seq: int) -> Iterator[tuple[np.ndarray, tuple[int, TickBlock]]]:
        """(event times, (seq of row 0, block)) per block, trimmed to ``start_seq`` and ``max_ticks``."""
        limit = self.config.max_ticks
        for first_seq, block in self.blocks(start_seq):
            lo = max(0, start_seq - first_seq)
            hi = len(block) if limit is None else min(len(block), limit - first_seq)
            yield block.ts[lo:hi], (first_seq + lo, _block_rows(block, lo, hi))

    def ticks(self, start_seq: int = 0) -> Iterator[RawTick]:
        if start_seq < 0:
            raise ValueError(f"start_seq must be >= 0, got {start_seq}")
        source, symbols, limit = self.source, self.config.symbols, self.config.max_ticks
        pacer = self._pacer_factory(self.speed)
        paced = pacer.paced
        wait_until = pacer.wait_until
        for first_seq, block in self.blocks(start_seq):
            lo = max(0, start_seq - first_seq)
            hi = len(block) if limit is None else min(len(block), limit - first_seq)
            cols = (
                block.ts[lo:hi].tolist(),
                [symbols[i] for i in block.symbol[lo:hi].tolist()],
                block.is_quote[lo:hi].tolist(),
                block.bid[lo:hi].tolist(),
                block.ask[lo:hi].tolist(),
                block.bid_size[lo:hi].tolist(),
                block.ask_size[lo:hi].tolist(),
                block.price[lo:hi].tolist(),
                block.size[lo:hi].tolist(),
                [_SIDES[i] for i in block.side[lo:hi].tolist()],
                block.trade_id[lo:hi].tolist(),
            )
            seq = first_seq + lo
            for ts, sym, is_quote, bid, ask, bsz, asz, px, sz, side, tid in zip(*cols):
                if is_quote:
                    payload = {"type": "quote", "ts": ts, "bid": bid, "ask": ask, "bid_size": bsz, "ask_size": asz}
                else:
                    payload = {"type": "trade", "ts": ts, "price": px, "size": sz, "side": side, "trade_id": str(tid)}
                if paced:
                    wait_until(ts)
                yield raw_tick(source, seq, ts, now_ns(), sym, payload)
                seq += 1


def _block_rows(block: TickBlock, lo: int, hi: int) -> TickBlock:
    """Rows ``[lo, hi)`` of a block (views, no copy)."""
    return TickBlock(*(getattr(block, name)[lo:hi] for name in block.__dataclass_fields__))


def _block_batch(
    source: str, symbols: tuple[str, ...], block: TickBlock, first_seq: int, lo: int, hi: int, watermark: int
) -> RawTickBatch:
    """Rows ``[lo, hi)`` of ``block`` (whose row 0 is tick ``first_seq``) as a RawTickBatch: the
    values ``ticks()`` puts in the payloads, NaN / None in the columns a kind lacks."""
    is_quote = block.is_quote[lo:hi]
    nan = np.nan
    trade_no = np.where(is_quote, -1, block.trade_id[lo:hi])  # ids as numbers: text only at the edges
    side = _SIDE_CODES[block.side[lo:hi]]
    side[is_quote] = SIDE_NONE
    n = hi - lo
    return RawTickBatch(
        source=source,
        symbols=symbols,
        symbol=block.symbol[lo:hi].astype(np.int32),
        kind=np.where(is_quote, QUOTE, TRADE).astype(np.int8),
        seq=np.arange(first_seq + lo, first_seq + hi, dtype=np.int64),
        ts_event=block.ts[lo:hi],
        ts_ingest=np.full(n, now_ns(), dtype=np.int64),
        price=np.where(is_quote, nan, block.price[lo:hi]),
        size=np.where(is_quote, nan, block.size[lo:hi]),
        side=side,
        trade_id=None,
        trade_no=trade_no,
        bid=np.where(is_quote, block.bid[lo:hi], nan),
        ask=np.where(is_quote, block.ask[lo:hi], nan),
        bid_size=np.where(is_quote, block.bid_size[lo:hi], nan),
        ask_size=np.where(is_quote, block.ask_size[lo:hi], nan),
        watermark=watermark,
    )
