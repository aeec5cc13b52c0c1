"""A plug-in whose targets depend on its own history: it flips its whole book every ``period``
cross-sections it has scored. A resume that lost its state would restart the count and flip at
other bars, so its orders show whether the strategy's state went into the recovery snapshot."""

from __future__ import annotations

from typing import Mapping

from pydantic import BaseModel, ConfigDict

from schemas import FeatureVector
from strategies.base import Strategy


class FlipperConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "flipper"
    period: int = 7


class Flipper(Strategy):
    Config = FlipperConfig

    def __init__(self, config: FlipperConfig | None = None) -> None:
        self.config = config or FlipperConfig()
        self.sections = 0  # cross-sections scored so far: the state a resume must bring back

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return f"1+{self.config.period}"

    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        self.sections += 1
        side = 1.0 if (self.sections // self.config.period) % 2 == 0 else -1.0
        return {v.symbol: side for v in cross_section}

    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        return {s: x / len(scores) for s, x in scores.items()}
