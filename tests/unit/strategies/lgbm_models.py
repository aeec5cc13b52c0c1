"""Small LightGBM models and registries for the model tests (fit in milliseconds)."""

from __future__ import annotations

import numpy as np

from schemas.feature_set import FEATURE_SET_V1, FEATURE_SET_VERSION
from strategies.registry import ModelRegistry
from tests.unit.strategies.fixtures import T0, vector


def tiny_booster(seed: int = 0, trees: int = 10, sign: float = 1.0):
    """A booster whose prediction follows ``sign * imbalance_5`` (plus noise it half-learns)."""
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, len(FEATURE_SET_V1)))
    y = sign * x[:, FEATURE_SET_V1.index("imbalance_5")] + 0.3 * rng.normal(size=600)
    params = {"objective": "regression", "num_leaves": 7, "min_data_in_leaf": 20, "seed": seed,
              "deterministic": True, "num_threads": 1, "verbosity": -1}
    return lgb.train(params, lgb.Dataset(x, label=y, feature_name=list(FEATURE_SET_V1)), num_boost_round=trees)


def metadata(ic: float = 0.08, feature_set: str = FEATURE_SET_VERSION, feature_names=FEATURE_SET_V1) -> dict:
    return {
        "feature_set": feature_set,
        "feature_names": list(feature_names),
        "interval": "1s",
        "metrics": {"folds": [], "overall": {"ic": ic, "rank_ic": ic, "hit_rate": 0.52, "rows": 1000}},
        "prediction_scale": 0.5,
        "training_window": {"ts_start": T0, "ts_end": T0 + 10**9, "symbols": ["SYN0"], "rows": 600},
        "data_hash": "0" * 64,
        "library_versions": {},
        "created_at": "2024-01-02T00:00:00+00:00",
    }


def registry_with(tmp_path, *boosters, name: str = "lightgbm", ics=None) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "models")
    for i, booster in enumerate(boosters):
        ic = 0.08 if ics is None else ics[i]
        registry.register(name, booster.model_to_string(), metadata(ic=ic))
    return registry


def random_cross_section(bar_end: int, seed: int, symbols=tuple(f"SYN{i}" for i in range(8))):
    rng = np.random.default_rng(seed)
    return [vector(s, bar_end, **dict(zip(FEATURE_SET_V1, rng.normal(size=len(FEATURE_SET_V1))))) for s in symbols]
