"""A per-symbol mean-reversion rule: fade the last few bars' move.

Run it:  tapeflow run --strategy examples.mean_reversion:MeanReversion --strategy-config mr.toml
with mr.toml holding any of the Config keys, e.g. ``entry_bps = 8.0``.

Each bar, for each symbol on its own: after a rise of at least ``entry_bps`` over the lookback
(``ret_5``: the log return of the last 5 bars) the target is short, after a fall of as much long,
otherwise flat. Every name that trades gets ``gross / n`` of the strategy's capital, so the book's
gross never exceeds ``gross``. The rule keeps no state: the target depends on this bar alone.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from schemas import FeatureVector
from strategies.base import Strategy

BPS = 1e4


class MeanReversionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")  # an unknown key in the TOML is an error

    name: str = Field(default="mean_reversion", min_length=1)
    lookback: Literal["ret_1", "ret_5", "ret_15"] = "ret_5"
    entry_bps: float = Field(default=5.0, gt=0.0, description="Min |move| in basis points to fade it.")
    gross: float = Field(default=1.0, gt=0.0, le=1.0)


class MeanReversion(Strategy):
    Config = MeanReversionConfig  # what --strategy-config is validated against

    def __init__(self, config: MeanReversionConfig | None = None) -> None:
        self.config = config or MeanReversionConfig()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        c = self.config
        return f"1+{c.lookback}:{c.entry_bps:g}:{c.gross:g}"

    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        """Minus the move in bp: positive after a fall (bullish for a fader), 0 before warm-up."""
        scores = {}
        for vector in cross_section:
            move = vector.values.get(self.config.lookback)
            scores[vector.symbol] = -move * BPS if move is not None and math.isfinite(move) else 0.0
        return scores

    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        per_name = self.config.gross / len(scores) if scores else 0.0
        entry = self.config.entry_bps
        return {s: (per_name if x >= entry else -per_name if x <= -entry else 0.0) for s, x in scores.items()}
