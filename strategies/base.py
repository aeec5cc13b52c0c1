"""The strategy protocol: what every strategy, built-in or plug-in, meets so the signals stage can
run any of them unchanged.

What a strategy receives: one **cross-section** per bar, all symbols' :class:`schemas.FeatureVector`
of one bar time (``bar_end``, ``close`` and the feature set's ``values``), sorted by symbol, once the
signals stage knows no other symbol's vector for that bar is coming. A per-symbol rule loops over it;
a cross-sectional rule ranks within it. Bars are released in increasing time, each exactly once.

What it returns: ``score(cross_section)`` gives a score per symbol, then ``target_weights(scores)``
gives the **target weights** of its own capital (symbol -> weight in [-1, 1], gross = sum |w| <= 1;
a symbol it leaves out is flat). Targets, never orders: sizing against the strategy's own capital
and positions, lots, netting against working orders, ids, risk and the venue are the desk's, so a
strategy is a pure function of the tape it has seen and trivially testable.

Its **state** is whatever its attributes hold (the LightGBM strategy's ``edge`` mode remembers its
previous targets): the strategy object is pickled into the signals stage's recovery snapshot and
comes back with it on a resume, so it must pickle, and must not read the wall clock or anything
outside the vectors (replays must be identical).

Its **config**: a class attribute ``Config``, a pydantic model (``extra="forbid"``, so an unknown key
is an error); ``--strategy-config file.toml`` is validated against it and the strategy is built as
``Class(config)``. A strategy without ``Config`` is built as ``Class()`` and takes no config file.
One that needs the run's context (the model registry, the account) defines a classmethod
``from_config(config, context: StrategyContext)`` instead.

It also has a ``name`` (part of every client_order_id and the ledger's key: never change it for a
live book), a ``version`` (stamped on every Signal), an optional ``model_version`` and the
``feature_set`` it reads. Subclassing :class:`Strategy` is the easy way to meet all this, but any
class with these members works (``strategies/loading.py`` checks them when the run starts).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

from schemas import FeatureVector

# Weights are floats; allow rounding noise when checking the gross bound.
GROSS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class StrategyContext:
    """What a run tells a strategy's ``from_config`` about itself."""

    account: str = "paper"
    model_registry: str = "data/models"
    model_name: str = "lightgbm"


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
