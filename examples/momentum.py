"""A cross-sectional momentum rule: long the recent winners, short the recent losers.

Run it:  tapeflow run --strategy examples.momentum:Momentum --strategy-config mom.toml

Each bar, the symbols are ranked by their return over the lookback (``ret_15``: the last 15 bars);
the ``top_n`` best are bought and the ``top_n`` worst sold short at ``gross / (2 top_n)`` each, a
winner only if its return is positive and a loser only if negative (a flat market stays flat).
Ties break on the symbol, so a replay picks the same names. It needs a cross-section: with fewer
than ``2 top_n`` symbols it trades fewer names per side, with one symbol none.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from schemas import FeatureVector
from strategies.base import Strategy, long_short_weights


class MomentumConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="momentum", min_length=1)
    lookback: Literal["ret_1", "ret_5", "ret_15"] = "ret_15"
    top_n: int = Field(default=1, ge=1, description="Names per side.")
    gross: float = Field(default=1.0, gt=0.0, le=1.0)


class Momentum(Strategy):
    Config = MomentumConfig

    def __init__(self, config: MomentumConfig | None = None) -> None:
        self.config = config or MomentumConfig()

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        c = self.config
        return f"1+{c.lookback}:{c.top_n}:{c.gross:g}"

    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        """The lookback return; 0 (no view) before warm-up."""
        scores = {}
        for vector in cross_section:
            move = vector.values.get(self.config.lookback)
            scores[vector.symbol] = move if move is not None and math.isfinite(move) else 0.0
        return scores

    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        return long_short_weights(scores, self.config.top_n, self.config.gross)
