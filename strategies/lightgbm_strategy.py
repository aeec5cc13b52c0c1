"""The LightGBM signal as a serving strategy: one batched prediction per cross-section.

``score(cross_section)`` stacks the bar's vectors into one numpy matrix in ``FEATURE_SET_V1`` order
(symbols sorted, a missing or non-finite value as NaN, which LightGBM routes like a missing value)
and calls ``booster.predict`` once. Then:

- cross-sectional mode (at least ``min_cross_section`` symbols): the score is the prediction's
  z-score within the cross-section (``strategies.baseline.zscores``: population std, 0 without
  dispersion), so the book bets on *relative* forecasts and the shared market move drops out;
- time-series mode (fewer symbols, e.g. the single BTC series): a z-score over one name is
  meaningless, so the score is the prediction divided by the model's ``prediction_scale`` (the std
  of its out-of-sample predictions, stored in the registry) - "how many typical forecasts strong".

Weights, as the baseline's (same rules, so the two are comparable on the desk):

- ``rank``: long the top-N and short the bottom-N scores at ``gross / (2N)`` each; a name needs a
  strictly positive (negative) score to be long (short);
- ``threshold``: ``sign(score) * gross / n`` for every name with ``|score| >= z_threshold``;
- time-series mode: ``sign(score) * gross / n`` when ``|score| >= ts_threshold``.

Defaults trade only strong forecasts (``threshold`` mode, ``z_threshold`` 1.5): rebalancing every
1-second bar toward the top and bottom names pays the spread and fees far more often than a
1-bar forecast earns them (see the training report in the issue for the measured turnover).

The model lives in a :class:`ServingModel`, which pickles as its LightGBM text (Bytewax recovery
snapshots the signals state); the Booster is rebuilt lazily after unpickling. The strategy scores
with whatever model its :class:`strategies.model_swap.ModelSlot` holds at the start of each
cross-section, so a hot swap takes effect between bars, never within one.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from flows.features import FEATURE_SET_V1, FEATURE_SET_VERSION
from schemas import FeatureVector
from strategies.base import Strategy, long_short_weights, threshold_weights
from strategies.baseline import zscores

LIGHTGBM_LOGIC_VERSION = "1"


class ServingModel:
    """A fitted booster with what serving needs to know about it; pickles as text."""

    def __init__(
        self,
        model_text: str,
        version: str,
        feature_names: tuple[str, ...] = FEATURE_SET_V1,
        prediction_scale: float = 1.0,
        feature_set: str = FEATURE_SET_VERSION,
    ) -> None:
        if not prediction_scale > 0.0 or not math.isfinite(prediction_scale):
            raise ValueError(f"prediction_scale must be a positive number, got {prediction_scale}")
        self.model_text = model_text
        self.version = version
        self.feature_names = tuple(feature_names)
        self.prediction_scale = float(prediction_scale)
        self.feature_set = feature_set
        self._booster: Any = None

    @classmethod
    def from_booster(cls, booster: Any, version: str, prediction_scale: float = 1.0) -> "ServingModel":
        return cls(booster.model_to_string(), version, tuple(booster.feature_name()), prediction_scale)

    @property
    def booster(self) -> Any:
        if self._booster is None:
            import lightgbm as lgb

            self._booster = lgb.Booster(model_str=self.model_text)
            names = tuple(self._booster.feature_name())
            if names != self.feature_names:
                raise ValueError(f"model {self.version} was trained on columns {names}, not {self.feature_names}")
        return self._booster

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        # num_threads=1: a cross-section is a handful of rows, where thread start-up costs more
        # than it saves, and one thread keeps predictions bit-identical across machines.
        return self.booster.predict(matrix, num_threads=1)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_booster"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"ServingModel(version={self.version!r}, features={len(self.feature_names)})"


class LightGBMConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="lightgbm", min_length=1, description="Strategy name; part of client_order_ids.")
    mode: Literal["rank", "threshold"] = Field(default="threshold", description="How cross-sectional scores become weights.")
    top_n: int = Field(default=2, ge=1, description="Names per side in rank mode.")
    z_threshold: float = Field(default=1.0, ge=0.0, description="Min |z| to trade in threshold mode.")
    min_cross_section: int = Field(default=3, ge=1, description="Fewer names switch to time-series mode.")
    ts_threshold: float = Field(default=1.0, ge=0.0, description="Min |prediction / prediction_scale| in time-series mode.")
    gross: float = Field(default=1.0, gt=0.0, le=1.0, description="Gross weight when fully invested.")

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]


def feature_rows(cross_section: list[FeatureVector], feature_names: tuple[str, ...] = FEATURE_SET_V1) -> np.ndarray:
    """The cross-section as a float64 matrix, one row per vector in the given order."""
    matrix = np.empty((len(cross_section), len(feature_names)), dtype=np.float64)
    for i, vector in enumerate(cross_section):
        values = vector.values
        matrix[i] = [values.get(name, math.nan) for name in feature_names]
    matrix[~np.isfinite(matrix)] = np.nan
    return matrix


class LightGBMStrategy(Strategy):
    """Serving strategy over a hot-swappable LightGBM model (see the module docstring)."""

    def __init__(self, model: "ServingModel | Any", config: LightGBMConfig | None = None) -> None:
        from strategies.model_swap import ModelSlot

        self.config = config or LightGBMConfig()
        self.slot: ModelSlot = model if isinstance(model, ModelSlot) else ModelSlot(model)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return f"{LIGHTGBM_LOGIC_VERSION}+{self.config.digest()}"

    @property
    def model_version(self) -> str:
        return self.slot.active.version

    def is_time_series(self, n_names: int) -> bool:
        return n_names < self.config.min_cross_section

    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        ordered = sorted(cross_section, key=lambda v: v.symbol)
        if len({v.symbol for v in ordered}) != len(ordered):
            raise ValueError("a cross-section holds one vector per symbol")
        if not ordered:
            return {}
        matrix = feature_rows(ordered, self.slot.active.feature_names)
        bar_end = ordered[0].bar_end
        model = self.slot.model_for(bar_end, matrix)  # applies a staged swap between bars
        predictions = model.predict(matrix)
        return self.scores_from_predictions([v.symbol for v in ordered], predictions, model.prediction_scale)

    def scores_from_predictions(self, symbols: list[str], predictions: np.ndarray, scale: float) -> dict[str, float]:
        raw = {s: float(p) for s, p in zip(symbols, predictions)}
        if self.is_time_series(len(raw)):
            return {s: p / scale for s, p in raw.items()}
        return zscores(raw)

    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        cfg = self.config
        n = len(scores)
        if n == 0:
            return {}
        if self.is_time_series(n) or cfg.mode == "threshold":
            threshold = cfg.ts_threshold if self.is_time_series(n) else cfg.z_threshold
            return threshold_weights(scores, threshold, cfg.gross)
        return long_short_weights(scores, cfg.top_n, cfg.gross)
