"""The contract every strategy meets, so the signals stage can run any of them unchanged.

A strategy is a function of one cross-section of feature vectors (all symbols at one bar time): it
scores each symbol, then turns the scores into target portfolio weights. At most it remembers its
own previous targets (the LightGBM strategy's ``edge`` mode holds a name until its forecast turns,
a no-trade region that needs yesterday's answer); it holds no positions and sends no orders; sizing, netting and ids belong to the portfolio constructor, and
event-time bookkeeping to the signals stage. That split keeps strategies trivially testable and lets
a model-based strategy (LightGBM) slot in beside the rule-based baseline.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Mapping

from schemas import FeatureVector

# Weights are floats; allow rounding noise when checking the gross bound.
GROSS_TOLERANCE = 1e-9


class Strategy(ABC):
    """Scores a cross-section and maps scores to target weights.

    ``target_weights`` must return, for every scored symbol, a weight in [-1, 1] (positive long,
    negative short, 0 flat) whose absolute values sum to at most 1: weights are fractions of the
    strategy's capital, and the gross bound is the strategy's own guarantee, not a downstream fix.
    """

    #: Which feature-set version the strategy was written (or trained) against.
    feature_set: ClassVar[str] = "v1"

    @property
    @abstractmethod
    def name(self) -> str:
        """Stable strategy name; part of every client_order_id, so never change it for a live book."""

    @property
    @abstractmethod
    def version(self) -> str:
        """Version of the logic and its parameters; stamped on every Signal."""

    @property
    def model_version(self) -> str:
        """Version of a fitted model, if any; rule-based strategies have none."""
        return ""

    @abstractmethod
    def score(self, cross_section: list[FeatureVector]) -> dict[str, float]:
        """Symbol -> score for every vector in the cross-section (higher = more bullish)."""

    @abstractmethod
    def target_weights(self, scores: Mapping[str, float]) -> dict[str, float]:
        """Symbol -> target weight in [-1, 1], one per scored symbol, gross (sum of |w|) <= 1."""


def gross_exposure(weights: Mapping[str, float]) -> float:
    return math.fsum(abs(w) for w in weights.values())


def is_valid_target(weights: Mapping[str, float], gross_cap: float = 1.0) -> bool:
    """True when every weight is in [-1, 1] and the gross is within ``gross_cap``."""
    return all(-1.0 <= w <= 1.0 and math.isfinite(w) for w in weights.values()) and (
        gross_exposure(weights) <= gross_cap + GROSS_TOLERANCE
    )


def scale_to_gross(weights: Mapping[str, float], gross_cap: float = 1.0) -> dict[str, float]:
    """Scale all weights down proportionally so the gross is at most ``gross_cap``.

    Proportional scaling keeps the strategy's relative bets intact, which is what a cap should do;
    clipping single names would distort the book toward the names that happened to be clipped.
    """
    gross = gross_exposure(weights)
    if gross <= gross_cap + GROSS_TOLERANCE or gross == 0.0:
        return dict(weights)
    factor = gross_cap / gross
    return {symbol: w * factor for symbol, w in weights.items()}


def threshold_weights(scores: Mapping[str, float], threshold: float, gross: float) -> dict[str, float]:
    """Equal weight ``gross / n`` on every name whose |score| reaches ``threshold``, signed by the
    score; every other name of the cross-section flat."""
    per_name = gross / len(scores) if scores else 0.0
    weights = {s: 0.0 for s in sorted(scores)}
    for s, score in scores.items():
        if abs(score) >= threshold and score != 0.0:
            weights[s] = per_name if score > 0 else -per_name
    return scale_to_gross(weights, gross)


def long_short_weights(scores: Mapping[str, float], top_n: int, gross: float) -> dict[str, float]:
    """Long the ``top_n`` best positive scores, short the ``top_n`` worst negative ones, equal
    weight ``gross / (2 top_n)``; fewer names per side in a thin cross-section. Ties break on the
    symbol so the selection is the same on every replay."""
    per_name = gross / (2 * top_n)
    n_side = min(top_n, len(scores) // 2)
    weights = {s: 0.0 for s in sorted(scores)}
    best_first = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    worst_first = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))
    for s, score in best_first[:n_side]:
        if score > 0:
            weights[s] = per_name
    for s, score in worst_first[:n_side]:
        if score < 0:
            weights[s] = -per_name
    return scale_to_gross(weights, gross)
