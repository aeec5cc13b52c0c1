"""The rule-based baseline: trade toward aggressive order flow, optionally with short-term momentum.

Hypothesis: when aggressors lift offers more than they hit bids in a bar (positive aggressor
imbalance), the price tends to keep drifting up for the next few seconds, and vice versa. The
synthetic feed plants exactly this weak relationship, so the baseline is the benchmark every other
strategy (the LightGBM model first) must beat. Ranking within the cross-section (long the strongest
buying, short the strongest selling, equal weight) keeps the book roughly market neutral, so the
common market factor the symbols share drops out of its P&L and only the relative flow edge remains.

Cross-sectional mode (at least ``min_cross_section`` symbols in the bar):

    score(s) = w_flow * z(flow_feature)(s) + w_mom * z(ret_5)(s)

with z-scores taken within the cross-section (population std; a feature a vector lacks, e.g. during
warm-up, scores 0 = neutral and does not enter the mean/std). Weights then come from either

- ``rank`` (default): long the top-N scores and short the bottom-N, each at ``gross / (2 * top_n)``;
  a name needs a strictly positive score to be long and strictly negative to be short, so a
  cross-section without dispersion stays flat. With fewer names than 2 * top_n, N shrinks to
  n // 2 and the book runs below full gross rather than concentrating.
- ``threshold``: every name with |score| >= ``z_threshold`` gets ``sign(score) * gross / n``.

Time-series mode (fewer than ``min_cross_section`` symbols, e.g. a single-symbol run): a z-score
over one or two names carries no information, so the score is the raw flow feature and the weight
is ``sign(score) * gross / n`` when |score| >= ``ts_threshold``, else flat. Momentum is not used
here: raw returns and raw imbalance live on different scales and there is nothing to z-score against.

Both modes give every scored symbol a weight (0 meaning "be flat"), so the portfolio constructor
closes positions the strategy no longer wants.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import FeatureVector
from strategies.base import Strategy, long_short_weights, threshold_weights

BASELINE_LOGIC_VERSION = "1"


class BaselineConfig(BaseModel):
    """Parameters of the baseline; the defaults are the planted-flow settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="baseline", min_length=1, description="Strategy name; part of client_order_ids.")
    flow_feature: Literal["imbalance_1", "imbalance_5"] = Field(
        default="imbalance_5",
        description="Order-flow feature. The planted drift over the next second is a decaying sum of "
        "the latent flow of the last 5 buckets, so the 5-bar imbalance tracks it far better than the "
        "1-bar one (corr. with the planted drift ~0.92 vs ~0.73 in a simulation of the feed's model).",
    )
    w_flow: float = Field(
        default=1.0, description="Weight of z(flow). Positive: buy pressure -> go long (the planted sign)."
    )
    w_mom: float = Field(
        default=0.0,
        description="Weight of z(ret_5). Off by default: the feed plants no momentum, and past returns "
        "already contain the part of the flow effect that has been realised, so they only add noise.",
    )
    mode: Literal["rank", "threshold"] = Field(default="rank", description="How cross-sectional scores become weights.")
    top_n: int = Field(default=2, ge=1, description="Names per side in rank mode (2 long + 2 short of 8).")
    z_threshold: float = Field(default=1.0, ge=0.0, description="Min |score| to trade in threshold mode.")
    min_cross_section: int = Field(
        default=3, ge=1, description="Fewer names than this switch to time-series mode (z over 1-2 names is degenerate)."
    )
    ts_threshold: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Min |raw imbalance| to trade in time-series mode; ~1 sd of imbalance_5 on the synthetic tape.",
    )
    gross: float = Field(default=1.0, gt=0.0, le=1.0, description="Gross weight when fully invested.")

    @model_validator(mode="after")
    def _has_a_signal(self) -> "BaselineConfig":
        if self.w_flow == 0.0 and self.w_mom == 0.0:
            raise ValueError("w_flow and w_mom are both 0: the strategy would never trade")
        return self

    def digest(self) -> str:
        """Short stable hash of the parameters, so two parameter sets never share a version."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]


def zscores(values: Mapping[str, float | None]) -> dict[str, float]:
    """Cross-sectional z-scores; missing values and a zero-dispersion cross-section give 0."""
    present = {s: v for s, v in values.items() if v is not None}
    if len(present) < 2:
        return {s: 0.0 for s in values}
    ordered = [present[s] for s in sorted(present)]  # fixed summation order: bit-identical replays
    mean = math.fsum(ordered) / len(ordered)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / len(ordered))
    if std <= 1e-12:
        return {s: 0.0 for s in values}
    return {s: (0.0 if v is None else (v - mean) / std) for s, v in values.items()}


def _feature(vector: FeatureVector, key: str) -> float | None:
    value = vector.values.get(key)
    return value if value is not None and math.isfinite(value) else None


class BaselineStrategy(Strategy):
    """Order-flow (plus optional momentum) cross-sectional strategy; see the module docstring."""

    Config = BaselineConfig

    def __init__(self, config: BaselineConfig | None = None) -> None:
        self.config = config or BaselineConfig()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        # Logic version + parameter digest: signals from different parameters are distinguishable.
        return f"{BASELINE_LOGIC_VERSION}+{self.config.digest()}"

    def is_time_series(self, n_names: int) -> bool:
        return n_names < self.config.min_cross_section

    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        by_symbol = {v.symbol: v for v in cross_section}
        if len(by_symbol) != len(cross_section):
            raise ValueError("a cross-section holds one vector per symbol")
        cfg = self.config
        flow = {s: _feature(v, cfg.flow_feature) for s, v in by_symbol.items()}
        if self.is_time_series(len(by_symbol)):
            return {s: (0.0 if f is None else f) for s, f in sorted(flow.items())}
        z_flow = zscores(flow)
        z_mom = zscores({s: _feature(v, "ret_5") for s, v in by_symbol.items()}) if cfg.w_mom else {}
        return {s: cfg.w_flow * z_flow[s] + cfg.w_mom * z_mom.get(s, 0.0) for s in sorted(by_symbol)}

    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        cfg = self.config
        n = len(scores)
        if n == 0:
            return {}
        if self.is_time_series(n):
            return threshold_weights(scores, cfg.ts_threshold, cfg.gross)
        if cfg.mode == "threshold":
            return threshold_weights(scores, cfg.z_threshold, cfg.gross)
        return long_short_weights(scores, cfg.top_n, cfg.gross)
